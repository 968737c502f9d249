"""Migration 3e8b1d7c5a42 copies the routing events the outbox held into the routing history, in their order."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import ROUTING_EVENTS, Channel, RoutingEvent, RoutingEventType
from tools.migrate import alembic_config

pytestmark = pytest.mark.integration


async def test_the_upgrade_copies_routing_events_from_the_outbox(database_url: str) -> None:
    config = alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "7a0c4e2b9d31")
    contact_id, at = uuid.uuid4(), datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    events = [
        RoutingEvent(
            event_id=uuid.uuid4(),
            type=kind,
            occurred_at=at + timedelta(seconds=i),
            contact_id=contact_id,
            conversation_key="webchat:shop:c1",
            channel=Channel.WEBCHAT,
            queue_id="presales",
            priority=10,
            reason="说明 \x01",
        )
        for i, kind in enumerate([RoutingEventType.QUEUED, RoutingEventType.OFFERED, RoutingEventType.ABANDONED])
    ]
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            for event in events:
                await conn.execute(
                    text("INSERT INTO router.outbox (topic, key, payload) VALUES (:topic, :key, :payload)"),
                    {"topic": ROUTING_EVENTS, "key": str(contact_id), "payload": event.model_dump_json()},
                )
            await conn.execute(
                text("INSERT INTO router.outbox (topic, key, payload) VALUES ('kefu.other.v1', 'k', '{}')")
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT contact_id, type, occurred_at, payload FROM router.routing_history ORDER BY id")
                )
            ).all()
    finally:
        await engine.dispose()
    assert [(r.contact_id, r.type, r.occurred_at) for r in rows] == [
        (contact_id, e.type.value, e.occurred_at) for e in events
    ]
    assert [RoutingEvent.model_validate_json(r.payload) for r in rows] == events
