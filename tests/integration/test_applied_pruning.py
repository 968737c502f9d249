"""Applied-event ids go once older than their retention, in batches; recent ones stay, and a replay of a recent
event is still recognised as applied."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import CONTACTS
from kefu import applied
from kefu.applied import AppliedRetention
from services.router.adapters.contact_store import mark_applied
from services.router.adapters.orm import applied_events

pytestmark = pytest.mark.integration


async def test_old_applied_ids_go_recent_ones_stay_and_a_recent_replay_is_still_a_duplicate(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        old = [uuid.uuid4() for _ in range(5)]
        recent = [uuid.uuid4() for _ in range(3)]
        async with engine.begin() as conn:
            for ids, ago in ((old, timedelta(days=15)), (recent, timedelta(days=6))):
                rows = [{"event_id": i, "topic": CONTACTS, "applied_at": func.now() - ago} for i in ids]
                for row in rows:
                    await conn.execute(insert(applied_events).values(row))
            assert await mark_applied(conn, fresh := uuid.uuid4(), CONTACTS)

        retention = AppliedRetention(keep_seconds=7 * 24 * 3600, prune_batch=2)
        assert await applied.prune(engine, applied_events, applied_events.c.applied_at, retention) == 5  # 2, 2, 1
        async with engine.connect() as conn:
            left = set((await conn.execute(select(applied_events.c.event_id))).scalars())
        assert left == {*recent, fresh}
        assert await applied.prune(engine, applied_events, applied_events.c.applied_at, retention) == 0

        async with engine.begin() as conn:  # a replay of a recent event is recognised: not applied again
            assert not await mark_applied(conn, recent[0], CONTACTS)
            assert not await mark_applied(conn, fresh, CONTACTS)
    finally:
        await engine.dispose()


def test_the_default_retention_outlasts_kafkas_default_retention_and_segment_roll() -> None:
    week = 7 * 24 * 3600
    assert AppliedRetention().keep_seconds >= 2 * week
