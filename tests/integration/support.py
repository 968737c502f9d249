"""Helpers for integration tests: serve an app in process, read topics, wait for conditions."""

import asyncio
import contextlib
import itertools
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI
from prometheus_client import REGISTRY

from contracts import CONTACTS, Channel, ContactEvent, Customer, Message
from kefu import kafka
from kefu.settings import ServiceSettings
from services.router.config import RouterSettings
from tools.embedded import EmbeddedKafka
from tools.serve import server_config

T = TypeVar("T")


# Ports for the servers tests start (brokers, fake platforms, services in a thread): below Linux's ephemeral range
# (32768-60999), where no client socket's port can take one between the pick and the server's bind, and a block of
# its own for each pytest-xdist worker, so that two workers never pick the same one.
_PORTS = range(20_000, 32_000)


def _port_block() -> range:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = len(_PORTS) // max(1, workers)
    return range(_PORTS.start + worker * size, _PORTS.start + (worker + 1) * size)


_BLOCK = _port_block()
# from a random place in the block (another test run on the machine has blocks of the same numbers), then on in turn:
# this process never hands out one port twice in a row, even one that was not bound yet
_START = random.randrange(len(_BLOCK))  # noqa: S311  # not a secret
_CANDIDATES: Iterator[int] = itertools.cycle([*_BLOCK[_START:], *_BLOCK[:_START]])


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on now and that no other worker of this run picks."""
    for port in itertools.islice(_CANDIDATES, len(_BLOCK)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {_BLOCK}")


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and yield a client that talks to it in process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kefu.test") as client:
            yield client


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy, for a minute by default: it returns as soon as the
    condition holds, so the deadline costs nothing when it does, and 15 s was not always enough for a flow through
    three services on two shared cores under a second test run."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(0.05)


# how long reading what a topic already holds may take on a loaded machine before a test gives up on it
CATCH_UP_SECONDS = 60.0


async def read_topic(bootstrap: str, topic: str, *, at_least: int = 0, timeout: float = 10.0) -> list[Any]:
    """Every record on ``topic`` from the start (waiting for ``at_least`` of them).

    It always reads up to the end offsets the topic had when asked: ``timeout`` is how long to wait for records
    beyond those (up to ``at_least``), never a limit on reading what is already there, which a loaded machine may
    take seconds to fetch (a short ``timeout`` used to return part of the topic then: a test counting "nothing more"
    saw less, and one unpacking the record it had just published saw nothing)."""
    # a fetch with nothing to return comes back after 50 ms: records still to come are seen at once (Tansu holds an
    # empty fetch for up to fetch_max_wait_ms, 500 by default)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        started = time.monotonic()
        waited_enough, stuck = started + timeout, started + max(timeout, CATCH_UP_SECONDS)
        there = await consumer.end_offsets(partitions)  # what the topic held when asked: read in full, always
        while True:
            end = await consumer.end_offsets(partitions)
            batches = await consumer.getmany(timeout_ms=100)
            for batch in batches.values():
                records.extend(batch)
            positions = dict(zip(partitions, [await consumer.position(tp) for tp in partitions], strict=True))
            if all(positions[tp] >= end[tp] for tp in partitions) and len(records) >= at_least:
                return records
            if all(positions[tp] >= there[tp] for tp in partitions) and time.monotonic() > waited_enough:
                return records
            if time.monotonic() > stuck:
                raise AssertionError(f"{topic}: not read up to its end offsets within {CATCH_UP_SECONDS} s")
    finally:
        await consumer.stop()


def contact_event(conversation: str = "c1", *, dedup: str | None = None, text: str = "你好") -> ContactEvent:
    now = datetime.now(UTC)
    dedup = dedup or f"msg_{uuid.uuid4().hex}"
    return ContactEvent(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, dedup),
        channel=Channel.WEBCHAT,
        account_id="shop",
        conversation_key=f"webchat:shop:{conversation}",
        dedup_key=dedup,
        customer=Customer(platform_id=f"visitor-{conversation}"),
        message=Message(text=text),
        occurred_at=now,
        received_at=now,
    )


def webchat_body(conversation: str = "c1", text: str = "你好") -> bytes:
    return json.dumps(
        {
            "conversation_id": conversation,
            "visitor": {"id": f"visitor-{conversation}", "name": "张伟"},
            "message": {"text": text, "sent_at": datetime.now(UTC).isoformat()},
        },
        ensure_ascii=False,
    ).encode()


async def assert_refused_then_still_serving(
    client: httpx.AsyncClient,
    refused: tuple[str, bytes, dict[str, str]],
    *,
    status: int,
    code: str,
    good: tuple[str, bytes, dict[str, str]],
    secrets: tuple[str, ...] = (),
) -> None:
    """``refused`` (url, body, headers) gets ``status`` with the JSON error ``code``, no stack trace and no
    secret in it; then ``good`` is still accepted."""
    url, body, headers = refused
    response = await client.post(url, content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"].startswith(code), error
    assert error["detail"]
    assert "Traceback" not in response.text
    for secret in secrets:
        assert secret not in response.text
    good_url, good_body, good_headers = good
    ok = await client.post(good_url, content=good_body, headers=good_headers)
    assert ok.is_success, ok.text


@contextlib.contextmanager
def server_in_thread(
    app: Any,
    port: int,
    *,
    lifespan: str = "off",
    name: str = "test-server",
    settings: ServiceSettings | None = None,
) -> Iterator[str]:
    """Serve ``app`` as the services are served (``tools.serve``: bounded requests) on ``127.0.0.1:port`` in a
    thread (a real HTTP peer); yield its base URL. ``settings`` sets the request limits and timeouts."""
    settings = (settings or ServiceSettings()).model_copy(update={"host": "127.0.0.1", "port": port})
    config = server_config(
        app,
        settings,
        log_config=None,
        lifespan=lifespan,
        timeout_graceful_shutdown=1,  # a hanging handler must not hold up the teardown
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a service's start-up (its consumers joining their groups) on a loaded machine
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, f"{name} did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def router_settings(database_url: str, broker: EmbeddedKafka, config_path: Path) -> RouterSettings:
    """A router on the test's database and broker, ticking fast, in a consumer group of its own."""
    return RouterSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        config_path=config_path,
        offer_tick_seconds=0.05,
        consumer_group=f"router-{uuid.uuid4().hex[:8]}",
    )


async def publish(bootstrap: str, topic: str, *messages: tuple[bytes, bytes]) -> None:
    """Send (value, key) messages to ``topic`` and wait for each acknowledgement."""
    producer = kafka.create_producer(bootstrap)
    await producer.start()
    try:
        for value, key in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def publish_contacts(bootstrap: str, *events: ContactEvent) -> None:
    """Publish contact events as the channels service does: keyed by conversation."""
    await publish(bootstrap, CONTACTS, *((e.model_dump_json().encode(), e.conversation_key.encode()) for e in events))


def contact_events(outcome: str) -> float:
    """How many contact events this process's routers counted with ``outcome`` (other tests count too)."""
    return REGISTRY.get_sample_value("kefu_router_contact_events_total", {"outcome": outcome}) or 0.0


def commands(outcome: str) -> float:
    """How many routing commands this process's routers counted with ``outcome`` (other tests count too)."""
    return REGISTRY.get_sample_value("kefu_router_commands_total", {"outcome": outcome}) or 0.0
