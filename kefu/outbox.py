"""The transactional outbox: events written in the same transaction as the state change that
caused them, and a relay that publishes them to Kafka (``acks=all``) and marks them sent.

At-least-once: a crash between the broker's ack and the mark publishes a row twice, which the
consumers' idempotency absorbs. Rows of one key keep their order (ascending id) when they are committed one
transaction after another, as a service writes a key's events; two transactions open at once commit in either order.

A pass of the relay is one batch in one transaction of three round trips (BEGIN, the claim, COMMIT): one statement
(``CLAIM``) takes the relays' lock and marks up to ``batch`` unpublished rows published, returning them; every row is
handed to the producer at once (its futures awaited together); the transaction commits once the broker acknowledged
them. Should some not be acknowledged, one more statement (``UNMARK``) puts those back, and they go out again on a
later pass; a rollback puts back the whole batch. The statements are plain SQL, prepared once per connection by the
driver: nothing is compiled per pass. Rows of a key keep their order on the way: they go to one partition, and the
producer (``kefu.kafka.create_producer``) has one request in flight per broker and puts a batch it retries back at
the head of its partition's queue. One relay of a table publishes at a time (a transaction-scoped advisory lock, taken
in the claim): two replicas' batches could otherwise interleave. The relay is woken by the commits that write rows
(``wake``): every wake-up during a pass comes to one more pass.

The outbox is a queue, not a record: the relay deletes published rows once they are older than a retention
(``KEFU_OUTBOX_KEEP_SECONDS``), so the table stays as small as what is in flight. What a service must read back
later (the router's routing history) it writes to a table of its own, in the same transaction.
"""

import asyncio
import collections
import contextlib
import logging
import time
import zlib
from collections.abc import Sequence
from datetime import timedelta
from operator import itemgetter
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu.outage import describe, log_retry, unavailable

log = logging.getLogger(__name__)

PUBLISHED = Counter("kefu_outbox_published_total", "Outbox rows published to Kafka", ["topic"])
PRUNED = Counter("kefu_outbox_pruned_total", "Published outbox rows deleted after their retention")
PASSES = Counter("kefu_outbox_batches_total", "Relay passes that published at least one outbox row")

# How long the relay sleeps with no wake-up before it looks anyway. Every commit that writes outbox rows wakes the
# relay of its process, so this only bounds the delay of a row nobody woke it for (written by hand, or by a process
# whose relay is down): 5 s, against a query a second per service for nothing.
POLL_SECONDS = 5.0

# How long a woken relay waits before it looks, so that the commits of a trickle share a pass: a pass of a row or two
# costs ~2.4 ms of CPU (a transaction, a produce request and its acknowledgement), almost all of it whatever it
# carries; 500 rows cost ~38 µs each (make bench-outbox). The router's commits (a fetch's batch, each accept, each
# completion) woke a pass each: at 50 contacts/s ~150 passes a second. Routing events reach their consumers this
# much later; nothing a desktop waits for goes through the outbox (offers and notices are pushed after the commit).
GATHER_SECONDS = 0.02

# A pass's claim, in one round trip: the relays' lock ($1), then up to $2 unpublished rows in id order, locked and
# marked published, returned (id, topic, key, payload). The lock is taken before any row is read (a one-time
# filter); a relay that waited for it reads with a snapshot taken before it waited, but a row another relay marked
# meanwhile is read again at its committed version (READ COMMITTED's recheck of a locked row) and left out.
# Plain SQL, run as the driver's prepared statement: no SQLAlchemy compilation per pass.
CLAIM = (
    "WITH relay AS MATERIALIZED (SELECT pg_advisory_xact_lock($1)), "
    "batch AS (SELECT id FROM {table} WHERE published_at IS NULL AND EXISTS (SELECT FROM relay) "
    "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) "
    "UPDATE {table} AS outbox SET published_at = now() FROM batch WHERE outbox.id = batch.id "
    "RETURNING outbox.id, outbox.topic, outbox.key, outbox.payload"
)
# the rows of a claim the broker did not acknowledge ($1, their ids), left for a later pass
UNMARK = "UPDATE {table} SET published_at = NULL WHERE id = ANY($1::bigint[])"
# Rows written in one statement, in their order (ids by ``n``), from ``rows``: a FROM item with the columns topic,
# key, payload and n. One execute whatever their number, where an executemany is one a row; plain SQL, one prepared
# statement for any number of rows. ``add`` writes its rows as three arrays (``ROWS``); a service writes its outbox's
# rows with others from one statement of its own (the router's late writes).
ADD = "INSERT INTO {table} (topic, key, payload) SELECT topic, key, payload FROM {rows} ORDER BY n"
ROWS = "unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS r(topic, key, payload, n)"


class OutboxRetention(BaseSettings):
    """How long published rows stay (``KEFU_OUTBOX_*``): a while, to look at what went out lately; not for ever,
    or every relay batch and every prune walks an ever longer table."""

    model_config = SettingsConfigDict(env_prefix="KEFU_OUTBOX_", extra="ignore")

    keep_seconds: float = Field(default=3600, ge=0, description="How long a published row is kept.")
    prune_every_seconds: float = Field(default=60, gt=0, description="How often the relay deletes expired rows.")
    prune_batch: int = Field(default=5000, ge=1, description="Rows deleted per transaction (short row locks).")


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
        Index("ix_outbox_published_at", "published_at", postgresql_where=text("published_at IS NOT NULL")),
    )


def outbox_row(topic: str, key: str, payload: str) -> dict[str, Any]:
    """One row for ``add``."""
    return {"topic": topic, "key": key, "payload": payload}


async def add(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` into the outbox inside the caller's transaction, in their order (one statement)."""
    if rows:
        name = conn.dialect.identifier_preparer.format_table(table)
        columns = ([row[column] for row in rows] for column in ("topic", "key", "payload"))
        await conn.exec_driver_sql(ADD.format(table=name, rows=ROWS), tuple(columns))


class OutboxRelay:
    """Publishes unpublished outbox rows; ``wake()`` after a commit (it looks ``gather_seconds`` later, with the
    commits that came meanwhile; or every ``poll_seconds``, a safety net). Between batches, on the retention's
    schedule, it deletes the rows published longer ago than the retention keeps them."""

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        producer: AIOKafkaProducer,
        *,
        batch: int = 500,
        retention: OutboxRetention | None = None,
        poll_seconds: float = POLL_SECONDS,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        self._engine = engine
        self._table = table
        self._producer = producer
        self._batch = batch
        self._retention = retention or OutboxRetention()
        self._poll_seconds = poll_seconds
        self._gather_seconds = gather_seconds
        self._wakeup = asyncio.Event()
        # one relay of this table at a time, across processes: the lock's key is the table's name
        self._lock_key = zlib.crc32(f"kefu.outbox:{table.fullname}".encode())
        name = engine.dialect.identifier_preparer.format_table(table)
        self._claim = CLAIM.format(table=name)
        self._unmark = UNMARK.format(table=name)

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """Relay until cancelled; broker or database trouble is retried with backoff."""
        delay = 0.1
        prune_at = time.monotonic()
        while True:
            # cleared before the pass, not after: a commit that wakes the relay during a pass (too late for its
            # SELECT) makes it go round once more instead of waiting for the poll
            self._wakeup.clear()
            try:
                sent = await self.relay_once()
                if time.monotonic() >= prune_at:
                    await self.prune()
                    prune_at = time.monotonic() + self._retention.prune_every_seconds
                delay = 0.1
            except Exception as exc:
                log_retry(log, exc, "outbox relay failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if sent < self._batch:  # a full batch: there may be more, go on at once
                await self._woken()

    async def _woken(self) -> None:
        """Wait for a wake-up, then ``gather_seconds`` for the commits right behind it; or ``poll_seconds``."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races the wake-up
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._poll_seconds):
                await self._wakeup.wait()
                await asyncio.sleep(self._gather_seconds)

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
        """Publish one batch; return how many rows it held. The rows the broker acknowledged are marked published
        even when others failed; the first failure is then raised, and the rest stay for a later pass."""
        async with self._engine.begin() as conn:
            # marked in the claim, unmarked below if not acknowledged: one statement, and the transaction's
            # rollback (a crash, a lost connection) leaves every row of the batch unpublished
            claimed = await conn.exec_driver_sql(self._claim, (self._lock_key, self._batch))
            rows: list[Any] = sorted(claimed.all(), key=itemgetter(0))  # by id: RETURNING has no order
            if not rows:
                return 0
            acked, failure = await self._send(rows)
            if len(acked) < len(rows):
                await conn.exec_driver_sql(self._unmark, ([row[0] for row in rows if row[0] not in acked],))
        PASSES.inc()
        for topic, count in collections.Counter(row[1] for row in rows if row[0] in acked).items():
            PUBLISHED.labels(topic).inc(count)
        if failure is not None:
            raise failure
        return len(rows)

    async def _send(self, rows: Sequence[Any]) -> tuple[set[int], BaseException | None]:
        """Hand every row (id, topic, key, payload) to the producer, then wait for all the acks together: the ids
        acknowledged, and the first failure (a send refused, or an ack that did not come). A refused send stops the
        batch there."""
        send = self._producer.send
        futures: list[asyncio.Future[Any]] = []
        failure: BaseException | None = None
        try:
            for _, topic, key, payload in rows:
                futures.append(await send(topic, payload.encode(), key=key.encode()))
        except Exception as exc:
            failure = exc
        results = await asyncio.gather(*futures, return_exceptions=True)
        acked = {row[0] for row, result in zip(rows, results, strict=False) if not isinstance(result, BaseException)}
        if failure is None:
            failure = next((result for result in results if isinstance(result, BaseException)), None)
        return acked, failure

    async def prune(self) -> int:
        """Delete the rows published longer ago than the retention (by the database's clock), a batch per
        transaction; return how many went. Unpublished rows always stay."""
        table, retention = self._table, self._retention
        cutoff = func.now() - timedelta(seconds=retention.keep_seconds)
        total = 0
        while True:
            expired = (
                select(table.c.id)
                .where(table.c.published_at < cutoff)
                .order_by(table.c.published_at)
                .limit(retention.prune_batch)
                .with_for_update(skip_locked=True)
            )
            async with self._engine.begin() as conn:
                gone = len(
                    (await conn.execute(delete(table).where(table.c.id.in_(expired)).returning(table.c.id))).all()
                )
            total += gone
            PRUNED.inc(gone)
            if gone < retention.prune_batch:
                if total:
                    log.debug("outbox pruned: %d published rows older than %gs deleted", total, retention.keep_seconds)
                return total
