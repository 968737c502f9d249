"""The transactional outbox: events written in the same transaction as the state change that
caused them, and a relay that publishes them to Kafka (``acks=all``) and marks them sent.

At-least-once: a crash between the broker's ack and the mark publishes a row twice, which the
consumers' idempotency absorbs. Rows of one key keep their order (ascending id).
"""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu.outage import describe, log_retry, unavailable

log = logging.getLogger(__name__)

PUBLISHED = Counter("kefu_outbox_published_total", "Outbox rows published to Kafka", ["topic"])


def outbox_table(metadata: MetaData) -> Table:
    """The outbox table of a service's schema: one row per event to publish, in commit order."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("topic", String(255), nullable=False),
        Column("key", String(512), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("published_at", DateTime(timezone=True)),
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    )


def outbox_row(topic: str, key: str, payload: str) -> dict[str, Any]:
    """One row for ``add``."""
    return {"topic": topic, "key": key, "payload": payload}


async def add(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` into the outbox inside the caller's transaction."""
    if rows:
        await conn.execute(insert(table), list(rows))


class OutboxRelay:
    """Publishes unpublished outbox rows; ``wake()`` after a commit, or it polls every second."""

    def __init__(self, engine: AsyncEngine, table: Table, producer: AIOKafkaProducer, *, batch: int = 500) -> None:
        self._engine = engine
        self._table = table
        self._producer = producer
        self._batch = batch
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until cancelled; broker or database trouble is retried with backoff."""
        delay = 0.1
        while True:
            try:
                sent = await self.relay_once()
                delay = 0.1
            except Exception as exc:
                log_retry(log, exc, "outbox relay failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if sent < self._batch:
                self._wakeup.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races the wake-up
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wakeup.wait()

    async def drain(self, timeout: float = 5.0) -> None:
        """Publish what is left, on the way out (after the loop stopped, before the producer does), so that the
        last events do not wait for the next start. Bounded: a broker that is down only delays them."""
        try:
            async with asyncio.timeout(timeout):
                sent = self._batch
                while sent >= self._batch:  # a full batch: there may be more
                    sent = await self.relay_once()
        except Exception as exc:  # a timeout or broker trouble: the rows stay for the next run
            expected = isinstance(exc, TimeoutError) or unavailable(exc) is not None
            log.warning(
                "outbox not drained at shutdown (%s); the rest goes out on the next start",
                describe(exc),
                exc_info=None if expected else exc,
            )

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows it held."""
        table = self._table
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(table.c.id, table.c.topic, table.c.key, table.c.payload)
                    .where(table.c.published_at.is_(None))
                    .order_by(table.c.id)
                    .limit(self._batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            futures = [await self._producer.send(row.topic, row.payload.encode(), key=row.key.encode()) for row in rows]
            await asyncio.gather(*futures)
            await conn.execute(
                update(table).where(table.c.id.in_([row.id for row in rows])).values(published_at=func.now())
            )
        for row in rows:
            PUBLISHED.labels(row.topic).inc()
        return len(rows)
