"""Issue 12: the records of a fetch applied in one transaction (``kefu.kafka.consume_batches``), each once, in order
per key, a failing record isolated and applied alone as before; and the router and the escalation service applying
records published at once in fewer transactions than records."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from contracts import CONTACTS, ROUTING_EVENTS, Channel, ContactEvent, RoutingEvent, RoutingEventType, dlq
from kefu import kafka
from kefu.batch import Steps, Stopped
from services.escalation.adapters.orm import routing_events
from services.escalation.config import EscalationSettings
from services.router.adapters.orm import messages
from tests.integration.support import contact_event, eventually, publish_contacts, read_topic, router_settings, serving
from tools.assemble import escalation_app
from tools.assemble import router_running as running
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration


def batches(topic: str) -> tuple[float, float]:
    """``kefu_batch_size{topic}``: handler calls (a transaction each, or more) and records handed over."""
    count = REGISTRY.get_sample_value("kefu_batch_size_count", {"topic": topic}) or 0.0
    total = REGISTRY.get_sample_value("kefu_batch_size_sum", {"topic": topic}) or 0.0
    return count, total


async def send_all(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    """Publish ``records`` (value, key) at once, so that a fetch finds many."""
    producer = kafka.create_producer(bootstrap)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key) for value, key in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def consuming_batches(broker: EmbeddedKafka, handler: kafka.BatchHandler[ContactEvent]) -> AsyncIterator[None]:
    consumer = kafka.create_consumer(broker.bootstrap, CONTACTS, group_id=f"test-{uuid.uuid4().hex[:8]}")
    producer = kafka.create_producer(broker.bootstrap)
    await kafka.start_all(consumer, producer)
    task = asyncio.create_task(
        kafka.consume_batches(consumer, producer, ContactEvent, handler, retry_delay=0.01, max_attempts=3)
    )
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await kafka.stop_all(consumer, producer)


def batch_handler(engine: AsyncEngine, transactions: list[int], savepoints: bool) -> kafka.BatchHandler[ContactEvent]:
    """Marks each event applied once, then logs it; ``poison`` fails. One transaction, a savepoint per record or
    none (a failure then rolls back the whole batch)."""

    async def handler(events: Sequence[ContactEvent]) -> None:
        stopped: Stopped | None = None
        async with engine.begin() as conn:
            transactions.append(len(events))
            steps = Steps(conn, savepoints=savepoints)
            try:
                for event in events:
                    async with steps.step(event):
                        marked = await conn.execute(
                            text("INSERT INTO marks VALUES (:id) ON CONFLICT DO NOTHING RETURNING id"),
                            {"id": event.event_id},
                        )
                        if marked.first() is None:
                            continue  # a duplicate
                        body = event.message.text
                        await conn.execute(
                            text("INSERT INTO applied (key, body) VALUES (:key, :body)"),
                            {"key": event.conversation_key, "body": body},
                        )
                        if body == "poison":
                            raise ValueError("this record can never be applied")
            except Stopped as exc:
                if not savepoints:
                    raise Stopped(0, exc.cause, at=exc.at) from exc.cause  # rolled back: all of it goes again
                stopped = exc
        if stopped is not None:
            raise stopped

    return handler


@pytest.mark.parametrize("savepoints", [True, False], ids=["savepoints", "no savepoints"])
async def test_a_replayed_fetch_applies_each_record_once_in_order_per_key_and_isolates_the_poison(
    broker: EmbeddedKafka, database_url: str, savepoints: bool
) -> None:
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE marks (id uuid PRIMARY KEY)"))
        await conn.execute(text("CREATE TABLE applied (seq serial PRIMARY KEY, key text, body text)"))
    keys = [f"k{i}" for i in range(20)]
    events = [contact_event(key, text=f"{key}-{n}") for n in range(10) for key in keys]
    poison = contact_event("k3", text="poison")
    replayed = [*events[:70], poison, *events[70:], *events[20:90]]  # a poison, then duplicates of 70 of them
    records = [(e.model_dump_json().encode(), e.conversation_key.encode()) for e in replayed]
    records.insert(120, (b'{"event_id": "not a contact', b"webchat:shop:k5"))  # and one that does not parse
    await send_all(broker.bootstrap, CONTACTS, records)
    transactions: list[int] = []
    before = batches(CONTACTS)
    try:
        async with consuming_batches(broker, batch_handler(engine, transactions, savepoints)):

            async def all_applied() -> bool:
                async with engine.connect() as conn:
                    count = (await conn.execute(text("SELECT count(*) FROM applied"))).scalar_one()
                return bool(count == len(events))

            await eventually(all_applied, timeout=60)
            letters = await read_topic(broker.bootstrap, dlq(CONTACTS), at_least=2)
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT key, body FROM applied ORDER BY seq"))).all()
    finally:
        await engine.dispose()
    for key in keys:  # each once, in the order published
        assert [body for k, body in rows if k == f"webchat:shop:{key}"] == [f"{key}-{n}" for n in range(10)]
    assert "poison" not in {body for _, body in rows}  # rolled back with its savepoint, every time
    dead = {dict(r.headers)["kefu-dlq-class"].decode(): r.value for r in letters}
    assert set(dead) == {"retries_exhausted", "unparseable"}
    assert ContactEvent.model_validate_json(dead["retries_exhausted"]).event_id == poison.event_id
    assert len(transactions) < len(records) / 4, transactions  # a few batches, and the poison alone three times
    assert transactions.count(1) >= 3
    count, total = batches(CONTACTS)
    assert count - before[0] == len(transactions)
    assert total - before[1] == sum(transactions)


async def test_the_router_applies_messages_published_at_once_in_fewer_transactions(
    database_url: str, broker: EmbeddedKafka, config_path: Path
) -> None:
    conversations = [f"c{i}" for i in range(5)]
    async with running(router_settings(database_url, broker, config_path)) as router:
        await publish_contacts(broker.bootstrap, *(contact_event(c, text="hello") for c in conversations))

        async def opened() -> bool:
            return len(router.service.state.waiting) + len(router.service.state.offers) >= len(conversations)

        await eventually(opened)
        follow_ups = [contact_event(c, text=f"more {n}") for n in range(60) for c in conversations]
        before = batches(CONTACTS)
        await send_all(
            broker.bootstrap,
            CONTACTS,
            [(e.model_dump_json().encode(), e.conversation_key.encode()) for e in follow_ups],
        )
        engine = create_async_engine(database_url)
        try:

            async def all_appended() -> bool:
                async with engine.connect() as conn:
                    count = (await conn.execute(select(func.count()).select_from(messages))).scalar_one()
                return count == len(conversations) + len(follow_ups)

            await eventually(all_appended, timeout=60)
        finally:
            await engine.dispose()
    count, total = batches(CONTACTS)
    assert total - before[1] >= len(follow_ups)  # more if a rebalance delivered some again
    assert count - before[0] < len(follow_ups) / 5  # handler calls; appends change no memory: one transaction each


async def test_the_escalation_service_applies_routing_events_published_at_once_in_fewer_transactions(
    database_url: str, broker: EmbeddedKafka, escalation_config_path: Path
) -> None:
    now = datetime.now(UTC)
    contacts = [uuid.uuid4() for _ in range(30)]
    events = [
        RoutingEvent(
            event_id=uuid.uuid4(),
            type=kind,
            occurred_at=now,
            contact_id=contact_id,
            conversation_key=f"webchat:shop:{contact_id}",
            channel=Channel.WEBCHAT,
            queue_id="presales",
            agent_id=None if kind is RoutingEventType.QUEUED else "alice",
        )
        for contact_id in contacts
        for kind in (RoutingEventType.QUEUED, RoutingEventType.OFFERED, RoutingEventType.ACCEPTED)
    ]
    settings = EscalationSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        config_path=escalation_config_path,
        consumer_group=f"esc-{uuid.uuid4().hex[:8]}",
    )
    records = [(e.model_dump_json().encode(), str(e.contact_id).encode()) for e in events]
    await send_all(broker.bootstrap, ROUTING_EVENTS, [*records, *records[:30]])  # and 30 redelivered
    before = batches(ROUTING_EVENTS)
    engine = create_async_engine(database_url)
    try:
        async with serving(escalation_app(settings)):

            async def all_stored() -> bool:
                async with engine.connect() as conn:
                    count = (await conn.execute(select(func.count()).select_from(routing_events))).scalar_one()
                return count == len(events)

            await eventually(all_stored, timeout=60)

            async def redeliveries_too() -> bool:  # not a 0.5 s sleep: on a loaded machine they came later
                return batches(ROUTING_EVENTS)[1] - before[1] >= len(records) + 30

            await eventually(redeliveries_too, timeout=60)
        async with engine.connect() as conn:
            facts = (
                await conn.execute(text("SELECT status, count(*) FROM escalation.contact_facts GROUP BY status"))
            ).all()
    finally:
        await engine.dispose()
    assert dict(facts) == {"assigned": len(contacts)}  # each contact's steps in order: queued, offered, accepted
    count, total = batches(ROUTING_EVENTS)
    assert total - before[1] >= len(records) + 30  # more if a rebalance delivered some again
    assert count - before[0] < len(records) / 5
