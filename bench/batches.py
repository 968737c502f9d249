"""Issue 12's before/after: how long the router takes to apply 5,000 contacts published at once to the embedded broker,
and the escalation service 5,000 routing events; on an embedded PostgreSQL (its default settings: fsync on) and Tansu.

    python -m bench.batches [router-new router-messages escalation]

prints one JSON line of seconds per workload. It uses only what the services had before issue 12 (``tools.assemble``),
so the same file measures an older tree: ``PYTHONPATH=/path/to/old/tree python /path/to/bench/batches.py``.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import ALL_TOPICS, CONTACTS, ROUTING_EVENTS, Channel, RoutingEvent, RoutingEventType
from kefu import kafka
from services.escalation.config import EscalationSettings
from services.router.config import RouterSettings
from tests.integration.conftest import CONFIG, ESCALATION_AGENT, ESCALATION_QUEUES
from tests.integration.support import contact_event
from tools import migrate
from tools.assemble import escalation_running, router_running
from tools.embedded import EmbeddedKafka, EmbeddedPostgres

N = 5000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def fresh_database(server: EmbeddedPostgres) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(server.url(), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    await migrate.upgrade_async(server.url(name))
    return server.url(name)


async def send_all(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = kafka.create_producer(bootstrap)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, value, key=key) for value, key in records])
    finally:
        await producer.stop()


async def until(url: str, query: str, count: int, timeout: float = 600) -> None:
    engine = create_async_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                if (await conn.execute(text(query))).scalar_one() >= count:
                    return
            await asyncio.sleep(0.05)
        raise TimeoutError(query)
    finally:
        await engine.dispose()


def contacts(conversations: int) -> list[tuple[bytes, bytes]]:
    """N contact events over ``conversations`` conversations, round by round."""
    events = [contact_event(f"c{i % conversations}", text=f"message {i}") for i in range(N)]
    return [(e.model_dump_json().encode(), e.conversation_key.encode()) for e in events]


def routing_events() -> list[tuple[bytes, bytes]]:
    now = datetime.now(UTC)
    kinds = (RoutingEventType.QUEUED, RoutingEventType.OFFERED, RoutingEventType.ACCEPTED)
    records = []
    for i in range(N):
        contact_id = uuid.UUID(int=i // 3 + 1)
        event = RoutingEvent(
            event_id=uuid.uuid4(),
            type=kinds[i % 3],
            occurred_at=now,
            contact_id=contact_id,
            conversation_key=f"webchat:shop:{contact_id}",
            channel=Channel.WEBCHAT,
            queue_id="presales",
            agent_id=None if i % 3 == 0 else "alice",
        )
        records.append((event.model_dump_json().encode(), str(contact_id).encode()))
    return records


async def timed(start: Callable[[], Awaitable[None]]) -> float:
    began = time.monotonic()
    await start()
    return time.monotonic() - began


async def router(server: EmbeddedPostgres, config: Path, conversations: int) -> float:
    url = await fresh_database(server)
    broker = EmbeddedKafka(free_port()).start()
    try:
        await kafka.ensure_topics(broker.bootstrap, ALL_TOPICS)
        settings = RouterSettings(
            database_url=url, kafka_bootstrap=broker.bootstrap, config_path=config, consumer_group="bench"
        )
        records = contacts(conversations)
        async with router_running(settings):

            async def run() -> None:
                await send_all(broker.bootstrap, CONTACTS, records)
                await until(url, "SELECT count(*) FROM router.applied_events", N)

            return await timed(run)
    finally:
        _stop(broker)


async def escalation(server: EmbeddedPostgres, config: Path) -> float:
    url = await fresh_database(server)
    broker = EmbeddedKafka(free_port()).start()
    try:
        await kafka.ensure_topics(broker.bootstrap, ALL_TOPICS)
        settings = EscalationSettings(
            database_url=url, kafka_bootstrap=broker.bootstrap, config_path=config, consumer_group="bench"
        )
        records = routing_events()
        async with escalation_running(settings):

            async def run() -> None:
                await send_all(broker.bootstrap, ROUTING_EVENTS, records)
                await until(url, "SELECT count(*) FROM escalation.routing_events", N)

            return await timed(run)
    finally:
        _stop(broker)


def _stop(broker: EmbeddedKafka) -> None:
    process: subprocess.Popen[bytes] | None = broker._process
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=5)
    broker.stop()


async def main(workloads: list[str]) -> None:
    os.environ.setdefault(kafka.SESSION_TIMEOUT_ENV, "2000")
    root = Path(tempfile.mkdtemp(prefix="kefu-bench-batches-"))
    config = root / "kefu.yaml"
    config.write_text(
        CONFIG.replace("  agents:\n", ESCALATION_QUEUES + "  agents:\n" + ESCALATION_AGENT), encoding="utf-8"
    )
    results: dict[str, float] = {}
    with EmbeddedPostgres(root / "data") as server:
        for workload in workloads:
            if workload == "router-new":
                results[workload] = await router(server, config, N)
            elif workload == "router-messages":
                results[workload] = await router(server, config, N // 10)
            else:
                results[workload] = await escalation(server, config)
    print(json.dumps({k: round(v, 2) for k, v in results.items()}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["router-new", "router-messages", "escalation"]))
