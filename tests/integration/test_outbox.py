"""The outbox relay publishes in batches, woken by commits, in order per key, marking only what the broker
acknowledged; it prunes what it published, after a retention; the router's timeline does not need the outbox."""

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from contracts import ROUTING_EVENTS
from kefu import kafka
from kefu.outbox import OutboxRelay, OutboxRetention, add, outbox_row
from services.router.adapters.orm import outbox
from tests.integration.conftest import CONFIG, SUPERVISOR_TOKEN
from tests.integration.support import contact_event, eventually, publish_contacts, read_topic, router_settings, serving
from tools.assemble import router_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration


async def _fill(engine: AsyncEngine) -> dict[str, list[int]]:
    """Rows of every kind, by kind: published two hours ago, published ten minutes ago, never published."""
    kinds = {"old": (timedelta(hours=2), True), "recent": (timedelta(minutes=10), True), "unpublished": (None, False)}
    ids: dict[str, list[int]] = {}
    async with engine.begin() as conn:
        for kind, (ago, published) in kinds.items():
            for _ in range(5 if kind == "old" else 2):
                at = func.now() - (ago or timedelta(hours=3))
                row = {"topic": ROUTING_EVENTS, "key": str(uuid.uuid4()), "payload": "{}", "created_at": at}
                if published:
                    row["published_at"] = at
                result = await conn.execute(insert(outbox).values(row).returning(outbox.c.id))
                ids.setdefault(kind, []).append(result.scalar_one())
    return ids


async def _ids(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(outbox.c.id))).scalars())


async def test_published_rows_older_than_the_retention_go_in_batches_and_unpublished_rows_stay(
    database_url: str, broker: EmbeddedKafka
) -> None:
    engine = create_async_engine(database_url)
    producer = kafka.create_producer(broker.bootstrap)  # not started: a prune publishes nothing
    try:
        ids = await _fill(engine)
        retention = OutboxRetention(keep_seconds=3600, prune_batch=2)
        relay = OutboxRelay(engine, outbox, producer, retention=retention)
        assert await relay.prune() == 5  # three batches: 2, 2, 1
        assert await _ids(engine) == {*ids["recent"], *ids["unpublished"]}
        assert await relay.prune() == 0
    finally:
        await producer.stop()
        await engine.dispose()


async def test_the_running_relay_publishes_then_prunes_on_its_schedule(
    database_url: str, broker: EmbeddedKafka
) -> None:
    engine = create_async_engine(database_url)
    producer = kafka.create_producer(broker.bootstrap)
    await producer.start()
    try:
        ids = await _fill(engine)
        relay = OutboxRelay(
            engine, outbox, producer, retention=OutboxRetention(keep_seconds=0, prune_every_seconds=0.1)
        )
        async with _running(relay):

            async def emptied() -> bool:
                return not await _ids(engine)

            await eventually(emptied)
        records = await read_topic(broker.bootstrap, ROUTING_EVENTS, at_least=2)
        assert len(records) == len(ids["unpublished"])  # published once, then pruned
    finally:
        await producer.stop()
        await engine.dispose()


async def test_a_contacts_routing_timeline_outlives_the_outbox(
    database_url: str, broker: EmbeddedKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = tmp_path / "kefu.yaml"  # an offer that stays open: its timeline holds two events, however slow
    config_path.write_text(CONFIG.replace("offer_timeout_seconds: 1", "offer_timeout_seconds: 600"), encoding="utf-8")
    monkeypatch.setenv("KEFU_OUTBOX_KEEP_SECONDS", "0")
    monkeypatch.setenv("KEFU_OUTBOX_PRUNE_EVERY_SECONDS", "0.1")
    event = contact_event("pruned")
    engine = create_async_engine(database_url)
    app = create_app(router_settings(database_url, broker, config_path))
    try:
        async with serving(app) as client:
            await publish_contacts(broker.bootstrap, event)
            supervisor = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}

            async def offered_and_pruned() -> list[str]:
                async with engine.connect() as conn:
                    left = (await conn.execute(text("SELECT count(*) FROM router.outbox"))).scalar_one()
                found = await client.get(f"/v1/contacts/{event.event_id}", headers=supervisor)
                types = [e["type"] for e in found.json().get("events", [])] if found.status_code == 200 else []
                return types if left == 0 and len(types) == 2 else []

            assert await eventually(offered_and_pruned) == ["queued", "offered"]
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _running(relay: OutboxRelay) -> AsyncIterator[None]:
    """The relay's loop as a task for the block, cancelled after it."""
    task = asyncio.create_task(relay.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class _CountingRelay(OutboxRelay):
    """A relay that counts its passes that published something, and all it made (``looks``)."""

    passes = 0
    looks = 0

    async def relay_once(self) -> int:
        sent = await super().relay_once()
        self.passes += sent > 0
        self.looks += 1
        return sent


async def test_rows_of_many_commits_go_out_in_fewer_passes_in_order_per_key(
    database_url: str, broker: EmbeddedKafka
) -> None:
    engine = create_async_engine(database_url)
    producer = kafka.create_producer(broker.bootstrap)
    await producer.start()
    commits, keys = 40, [f"conversation-{k}" for k in range(4)]
    try:
        relay = _CountingRelay(engine, outbox, producer, poll_seconds=60)  # only the wake-ups move it

        async def commit(n: int) -> None:  # each commit: two rows of one key, then the wake-up, as the services do
            async with engine.begin() as conn:
                key = keys[n % len(keys)]
                rows = [outbox_row(ROUTING_EVENTS, key, json.dumps({"n": n, "i": i})) for i in range(2)]
                await add(conn, outbox, rows)
            relay.wake()

        async with _running(relay):
            # commits of one key one after another (as the services write a key's events), of different keys at once
            for n in range(0, commits, len(keys)):
                await asyncio.gather(*(commit(m) for m in range(n, n + len(keys))))

            async def all_published() -> bool:
                async with engine.connect() as conn:
                    left = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
                    return (await conn.execute(left)).scalar_one() == 0

            await eventually(all_published)
        assert relay.passes < commits
        records = await read_topic(broker.bootstrap, ROUTING_EVENTS, at_least=2 * commits)
        assert len(records) == 2 * commits
        by_key: dict[str, list[tuple[int, int]]] = {}
        for record in records:  # a key's records are on one partition: its order is the partition's
            payload = json.loads(record.value)
            by_key.setdefault(record.key.decode(), []).append((payload["n"], payload["i"]))
        async with engine.connect() as conn:  # the order they were committed in, by key
            rows = (await conn.execute(select(outbox.c.key, outbox.c.payload).order_by(outbox.c.id))).all()
        committed: dict[str, list[tuple[int, int]]] = {}
        for row in rows:
            payload = json.loads(row.payload)
            committed.setdefault(row.key, []).append((payload["n"], payload["i"]))
        assert by_key == committed
    finally:
        await producer.stop()
        await engine.dispose()


async def test_commits_that_wake_the_relay_within_its_gathering_time_go_out_in_one_pass(
    database_url: str, broker: EmbeddedKafka
) -> None:
    """A woken relay waits ``gather_seconds`` before it looks: the commits of a trickle (an accept, a completion,
    a fetch's batch, each waking it) share a pass, whose fixed cost is most of a small one's (make bench-outbox)."""
    engine = create_async_engine(database_url)
    producer = kafka.create_producer(broker.bootstrap)
    await producer.start()
    try:
        relay = _CountingRelay(engine, outbox, producer, poll_seconds=60, gather_seconds=5)
        async with _running(relay):

            async def looked() -> bool:  # its first pass, at start, is over: from now on only wake-ups move it
                return relay.looks > 0

            await eventually(looked)
            for n in range(5):  # one after another, as a trickle of commits comes
                async with engine.begin() as conn:
                    await add(conn, outbox, [outbox_row(ROUTING_EVENTS, f"conversation-{n}", "{}")])
                relay.wake()
            records = await read_topic(broker.bootstrap, ROUTING_EVENTS, at_least=5)
        assert (len(records), relay.passes) == (5, 1)
    finally:
        await producer.stop()
        await engine.dispose()


class _FailingAfter:
    """A producer whose broker goes away after ``good`` sends of a batch: the acks of the later ones fail."""

    def __init__(self, producer: AIOKafkaProducer, good: int) -> None:
        self._producer, self._good = producer, good

    async def send(self, topic: str, value: bytes, *, key: bytes) -> "asyncio.Future[Any]":
        if self._good > 0:
            self._good -= 1
            sent: asyncio.Future[Any] = await self._producer.send(topic, value, key=key)
            return sent
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(KafkaTimeoutError("no ack"))
        return failed


async def test_a_broker_failure_mid_batch_leaves_what_was_not_acknowledged_unpublished(
    database_url: str, broker: EmbeddedKafka
) -> None:
    engine = create_async_engine(database_url)
    producer = kafka.create_producer(broker.bootstrap)
    await producer.start()
    try:
        async with engine.begin() as conn:
            await add(conn, outbox, [outbox_row(ROUTING_EVENTS, f"k{n}", json.dumps({"n": n})) for n in range(6)])
        failing = OutboxRelay(engine, outbox, _FailingAfter(producer, good=2))
        with pytest.raises(KafkaTimeoutError):
            await failing.relay_once()
        async with engine.connect() as conn:
            marked = (await conn.execute(select(outbox.c.payload, outbox.c.published_at).order_by(outbox.c.id))).all()
        assert [row.published_at is not None for row in marked] == [True, True, False, False, False, False]

        assert await OutboxRelay(engine, outbox, producer).relay_once() == 4  # only the rows not acknowledged
        records = await read_topic(broker.bootstrap, ROUTING_EVENTS, at_least=6)
        assert sorted(json.loads(r.value)["n"] for r in records) == list(range(6))  # each once
    finally:
        await producer.stop()
        await engine.dispose()


class _Held:
    """A producer whose sends wait until the test lets them go: its relay holds the relays' lock meanwhile. The acks
    of the rows numbered in ``fail`` do not come."""

    def __init__(self, producer: AIOKafkaProducer, fail: set[int]) -> None:
        self._producer, self._fail = producer, fail
        self.sending, self.go = asyncio.Event(), asyncio.Event()

    async def send(self, topic: str, value: bytes, *, key: bytes) -> "asyncio.Future[Any]":
        self.sending.set()
        await self.go.wait()
        if json.loads(value)["n"] in self._fail:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaTimeoutError("no ack"))
            return failed
        sent: asyncio.Future[Any] = await self._producer.send(topic, value, key=key)
        return sent


async def _waiting_for_the_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        waits = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
        return bool((await conn.execute(text(waits))).scalar_one())


async def test_a_relay_that_waited_for_another_publishes_only_what_that_one_left(
    database_url: str, broker: EmbeddedKafka
) -> None:
    """Two relays of one table (two replicas): the second's claim waits for the first's pass to commit, then leaves
    out the rows the first marked (read before the wait, read again at their committed version), and takes the rows
    the first could not publish and those written meanwhile, in id order."""
    first_engine, second_engine = create_async_engine(database_url), create_async_engine(database_url)
    producer = kafka.create_producer(broker.bootstrap)
    await producer.start()
    rows = [outbox_row(ROUTING_EVENTS, "one-key", json.dumps({"n": n})) for n in range(8)]
    try:
        async with first_engine.begin() as conn:
            await add(conn, outbox, rows[:6])
        held = _Held(producer, fail={4, 5})
        first = asyncio.create_task(OutboxRelay(first_engine, outbox, held).relay_once())
        await held.sending.wait()  # the first holds the lock and rows 0-5
        async with second_engine.begin() as conn:
            await add(conn, outbox, rows[6:])
        second = asyncio.create_task(OutboxRelay(second_engine, outbox, producer).relay_once())
        await eventually(partial(_waiting_for_the_lock, second_engine))
        held.go.set()
        with pytest.raises(KafkaTimeoutError):
            await first
        assert await second == 4  # 4 and 5 again (not acknowledged), 6 and 7
        records = await read_topic(broker.bootstrap, ROUTING_EVENTS, at_least=8)
        assert [json.loads(r.value)["n"] for r in records] == list(range(8))  # each once, in order (one key)
    finally:
        await producer.stop()
        await first_engine.dispose()
        await second_engine.dispose()
