"""Applied-event ids pruned: a table that records which events a consumer applied (so that a redelivery is applied
once) needs an id only as long as the event can come again. After that it is dead weight that every insert's index
lookup walks.

An event comes again from the broker: a redelivery after a rebalance or a crash (seconds), a consumer group whose
committed offsets expired and that starts again from the earliest record (Kafka's ``offsets.retention.minutes``, 7
days), or any read of a topic from its start: a record lives for the topic's ``retention.ms`` (7 days by default)
after the newest record of its segment, and a quiet topic's segment rolls only after ``segment.ms`` (7 days), so up to
14 days. The default keeps an id 14 days: longer than any of these, with Kafka's defaults. A deployment that keeps
its topics longer keeps its ids longer (``KEFU_APPLIED_KEEP_SECONDS``). A dead letter replayed later is safe either
way: its event was never applied (the handler's transaction, the id's insert with it, rolled back).
"""

import asyncio
import logging
from datetime import timedelta

from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Column, Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from kefu.outage import log_retry

log = logging.getLogger(__name__)

PRUNED = Counter("kefu_applied_pruned_total", "Applied-event ids deleted after their retention", ["table"])

DAY = 24 * 3600


class AppliedRetention(BaseSettings):
    """How long an applied event's id is kept (``KEFU_APPLIED_*``): longer than the broker may deliver it again."""

    model_config = SettingsConfigDict(env_prefix="KEFU_APPLIED_", extra="ignore")

    keep_seconds: float = Field(
        default=14 * DAY, ge=0, description="How long an applied id is kept: longer than any redelivery or retention."
    )
    prune_every_seconds: float = Field(default=3600, gt=0, description="How often expired ids are deleted.")
    prune_batch: int = Field(default=5000, ge=1, description="Ids deleted per transaction (short row locks).")


async def prune(engine: AsyncEngine, table: Table, applied_at: Column[object], retention: AppliedRetention) -> int:
    """Delete the ids of ``table`` applied (``applied_at``, by the database's clock) longer ago than the retention,
    a batch per transaction; return how many went."""
    (key,) = table.primary_key.columns
    cutoff = func.now() - timedelta(seconds=retention.keep_seconds)
    total = 0
    while True:
        expired = (
            select(key)
            .where(applied_at < cutoff)
            .order_by(applied_at)
            .limit(retention.prune_batch)
            .with_for_update(skip_locked=True)
        )
        async with engine.begin() as conn:
            gone = len((await conn.execute(delete(table).where(key.in_(expired)).returning(key))).all())
        total += gone
        PRUNED.labels(table.fullname).inc(gone)
        if gone < retention.prune_batch:
            if total:
                log.debug("%s pruned: %d ids older than %gs deleted", table.fullname, total, retention.keep_seconds)
            return total


async def keep_pruned(
    engine: AsyncEngine, table: Table, applied_at: Column[object], retention: AppliedRetention | None = None
) -> None:
    """Prune ``table`` now and on the retention's schedule, for ever (a background loop)."""
    retention = retention or AppliedRetention()
    while True:
        try:
            await prune(engine, table, applied_at, retention)
        except Exception as exc:
            log_retry(log, exc, "pruning applied event ids failed; will retry")
        await asyncio.sleep(retention.prune_every_seconds)
