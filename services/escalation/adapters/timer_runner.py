"""Firing due timers (``escalation.timers``, scheduled through ``adapters.timers.TimerStore``) exactly once.

A timer is fired by claiming its row with ``SELECT … FOR UPDATE SKIP LOCKED`` (so any number of runners can share
the table), calling ``await handler(timer, conn)`` and setting ``fired_at`` in that same transaction. The handler
writes its effects (case, audit, outbox rows) through ``conn``; they and ``fired_at`` commit together or not at all:

* a crash or cancellation before the commit releases the row lock and leaves the timer pending, so the
  next runner fires it again (the handler's writes were rolled back with it);
* after the commit the row is no longer pending, so no runner fires it again.

Hence exactly once for effects written through ``conn``; anything else the handler does (an HTTP call)
is at-least-once and belongs in an outbox instead.

All comparisons with the due time use the database's clock, one clock for every runner.
"""

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu.outage import log_retry
from services.escalation.adapters.orm import timers
from services.escalation.adapters.timers import COLUMNS, PENDING, Timer, timer_of

log = logging.getLogger(__name__)

FIRED = Counter("kefu_escalation_timers_fired_total", "Timers fired (handler committed)", ["kind"])
FAILED = Counter("kefu_escalation_timer_failures_total", "Handler failures; the timer stays pending", ["kind"])
DELAY = Histogram(
    "kefu_escalation_timer_delay_seconds",
    "From a timer's due time to its firing",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


Handler = Callable[[Timer, AsyncConnection], Awaitable[None]]


class TimerRunner:
    """Fires due timers until ``stop()`` or cancellation; sleeps until the next due time it knows of, which
    ``wake(due)`` brings forward (a commit that scheduled a timer due earlier), and looks only then (issue 12: woken
    by every commit, it looked 33 times a second at 40 contacts/s).

    ``max_idle`` bounds a sleep: it is how late a timer can be that someone scheduled earlier than the
    next known due time without waking this runner (another process, plain SQL).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch: int = 32,
        max_idle: float = 30.0,
        retry_base: float = 1.0,
        retry_max: float = 300.0,
        committed: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        # called after each commit that fired timers: their handlers' outbox rows are visible only from then on
        self._committed = committed
        self._batch = batch
        self._max_idle = max_idle
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._wakeup = asyncio.Event()
        self._deadline = math.inf  # monotonic time of the next look (set before each sleep, brought forward by wake)
        self._stopping = False
        # timer id -> (failures, monotonic time before which it is not retried); per runner, in memory,
        # because the table has no attempts column; another runner may retry sooner, which is harmless
        self._backoff: dict[uuid.UUID, tuple[int, float]] = {}

    def wake(self, due: datetime | None = None) -> None:
        """Look for due timers at ``due`` if that is before the next look this runner knows of (a timer committed
        that may be due before the others); without ``due``, now. Called while it looks, the look it sets after
        is no later than ``due``.

        ``due`` is read on this host's clock (the runner's looks on the database's): a timer is late by at most their
        difference, and never later than ``max_idle`` after it was due."""
        at = time.monotonic()
        if due is not None:
            at += (due - datetime.now(UTC)).total_seconds()
        if at < self._deadline:
            self._deadline = at
            self._wakeup.set()

    def stop(self) -> None:
        """Return from ``run`` once the batch in hand is committed."""
        self._stopping = True
        self._wakeup.set()

    async def run(self, handler: Handler) -> None:
        """Fire due timers until stopped; database trouble is retried with backoff."""
        self._stopping = False
        delay = 0.1
        while not self._stopping:
            self._deadline = math.inf  # looking: a wake() meanwhile brings the next look forward from there
            try:
                if await self.fire_due(handler) >= self._batch:
                    continue  # more may be due right now
                wait = await self._seconds_to_next()
                delay = 0.1
            except Exception as exc:
                log_retry(log, exc, "timer runner failed; retrying in %.1fs", delay)
                wait, delay = delay, min(delay * 2, 5.0)
            self._deadline = min(self._deadline, time.monotonic() + wait)
            await self._sleep()

    async def _sleep(self) -> None:
        """Until the next look (``_deadline``, which ``wake`` may bring forward) or ``stop``."""
        while not self._stopping and (left := self._deadline - time.monotonic()) > 0:
            self._wakeup.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation racing the wake-up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._wakeup.wait()

    async def fire_due(self, handler: Handler) -> int:
        """Fire one batch of due timers; return how many were claimed."""
        rows: list[Timer] = []
        try:
            async with self._engine.begin() as conn:
                rows = await self._claim(conn, limit=self._batch)
                for timer in rows:
                    await handler(timer, conn)
                await self._mark_fired(conn, rows)
        except Exception as exc:
            if not rows:
                raise  # the database, not a handler
            if len(rows) == 1:  # already alone: that one failed, no need to fire it again to find out
                self._failed(rows[0], exc)
                return 1
            # the whole batch rolled back: fire its timers one per transaction to find the failing one
            log.warning("a timer handler failed in a batch of %d; firing them one by one", len(rows))
            for timer in rows:
                await self._fire_alone(timer.id, handler)
            return len(rows)
        self._fired(rows)
        return len(rows)

    async def _fire_alone(self, timer_id: uuid.UUID, handler: Handler) -> None:
        rows: list[Timer] = []
        try:
            async with self._engine.begin() as conn:
                rows = await self._claim(conn, limit=1, only=timer_id)
                for timer in rows:
                    await handler(timer, conn)
                await self._mark_fired(conn, rows)
        except Exception as exc:
            if not rows:
                raise  # the database, not the handler: the run loop's backoff
            self._failed(rows[0], exc)
            return
        self._fired(rows)

    def _failed(self, timer: Timer, exc: Exception) -> None:
        """The handler failed for this timer alone: leave it pending and retry it after a growing backoff."""
        failures = self._backoff.get(timer.id, (0, 0.0))[0] + 1
        retry_in = min(self._retry_base * 2 ** (failures - 1), self._retry_max)
        self._backoff[timer.id] = (failures, time.monotonic() + retry_in)
        FAILED.labels(timer.kind).inc()
        log_retry(
            log, exc, "timer %s (%s) failed %d times; retrying in %.1fs", timer.id, timer.kind, failures, retry_in
        )

    async def _claim(self, conn: AsyncConnection, *, limit: int, only: uuid.UUID | None = None) -> list[Timer]:
        query = select(*COLUMNS).where(PENDING, timers.c.due_at <= func.now())
        if only is not None:
            query = query.where(timers.c.id == only)
        elif excluded := self._backing_off():
            query = query.where(timers.c.id.not_in(excluded))
        query = query.order_by(timers.c.due_at).limit(limit).with_for_update(skip_locked=True)
        return [timer_of(row) for row in await conn.execute(query)]

    @staticmethod
    async def _mark_fired(conn: AsyncConnection, rows: Iterable[Timer]) -> None:
        ids = [timer.id for timer in rows]
        if ids:
            # clock_timestamp(), not now(): the firing time, not the claiming transaction's start
            await conn.execute(update(timers).where(timers.c.id.in_(ids)).values(fired_at=func.clock_timestamp()))

    def _fired(self, rows: Iterable[Timer]) -> None:
        now = time.time()
        if self._committed is not None and rows:
            self._committed()
        for timer in rows:
            self._backoff.pop(timer.id, None)
            FIRED.labels(timer.kind).inc()
            DELAY.observe(max(0.0, now - timer.due_at.timestamp()))

    def _backing_off(self) -> list[uuid.UUID]:
        now = time.monotonic()
        if len(self._backoff) > 10_000:
            # forget the expired ones (fired or cancelled elsewhere meanwhile, or due a retry anyway)
            self._backoff = {t: entry for t, entry in self._backoff.items() if entry[1] > now}
        return [timer_id for timer_id, (_, until) in self._backoff.items() if until > now]

    async def _seconds_to_next(self) -> float:
        """Seconds until the next pending timer is due (by the database's clock), at most ``max_idle``."""
        query = select(func.extract("epoch", func.min(timers.c.due_at) - func.clock_timestamp())).where(PENDING)
        if excluded := self._backing_off():
            query = query.where(timers.c.id.not_in(excluded))
        async with self._engine.connect() as conn:
            seconds = (await conn.execute(query)).scalar()
        wait = self._max_idle if seconds is None else min(float(seconds), self._max_idle)
        if excluded:
            wait = min(wait, min(self._backoff[t][1] for t in excluded) - time.monotonic())
        return max(wait, 0.0)
