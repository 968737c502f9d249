"""The outbox relay prunes what it published, after a retention; the router's timeline does not need the outbox."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from contracts import ROUTING_EVENTS
from kefu import kafka
from kefu.outbox import OutboxRelay, OutboxRetention
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
