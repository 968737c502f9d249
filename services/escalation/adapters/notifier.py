"""Signed outbound notifications: a persistent outbox in ``escalation.notifications`` and a sender.

``enqueue`` writes a row inside the caller's transaction, so a case and its notification commit (or roll
back) together. ``Notifier.run`` claims due rows and POSTs them with a Standard Webhooks signature
(``webhook-id`` is the row's ``message_id``, the same on every attempt).

Claiming is a lease, not a held lock: one short transaction picks due rows (``FOR UPDATE SKIP LOCKED``, so
several notifiers share the table), counts the attempt and pushes ``next_attempt_at`` one lease ahead; the
HTTP call runs outside any transaction and a second transaction records its outcome. A notifier that dies
mid-send leaves the row leased; it becomes due again when the lease expires and another run sends it.

Delivery is therefore **at-least-once**: a crash after the receiver answered 2xx but before the outcome
was recorded sends the same message again, with the same ``webhook-id``. Receivers deduplicate on it.

Outcome of one attempt:

* 2xx → ``delivered_at``.
* 4xx other than 408 (timeout) and 429 (rate limited) → permanent: the receiver refuses this message and
  will refuse it again (410 Gone, 404, 401, 400 ...), so it is dead-lettered at once.
* no signing secret for the target → permanent too: an unsigned notification is never sent.
* anything else (network error, timeout, 408, 429, 3xx, 5xx) → retried after ``next_delay`` (exponential
  backoff, full jitter, capped); after ``max_attempts`` attempts the row is dead-lettered.

A dead letter is the row itself with ``dead_at`` and ``last_error`` set; it stays for inspection.
"""

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Counter
from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from standardwebhooks.webhooks import Webhook

from kefu.outage import log_retry
from services.escalation.adapters.orm import notifications

log = logging.getLogger(__name__)

OUTCOMES = Counter("kefu_notifications_total", "Outbound notification attempts by outcome", ["target", "outcome"])

_PENDING = and_(notifications.c.delivered_at.is_(None), notifications.c.dead_at.is_(None))
_ERROR_CHARS = 1000  # enough to diagnose, small enough that a chatty receiver cannot bloat the table


def next_delay(attempt: int, rng: random.Random, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): uniform in [0, min(cap, base·2^(attempt-1))].

    Full jitter spreads the retries of many notifications that failed together (a receiver outage).
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    # the exponent is bounded so a large attempt number cannot overflow the float
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    return rng.uniform(0.0, ceiling)


def is_permanent(status: int) -> bool:
    """Whether an HTTP status means the receiver will never accept this message (see the module docstring)."""
    return 400 <= status < 500 and status not in (408, 429)


async def enqueue(
    conn: AsyncConnection, *, target: str, url: str, payload: dict[str, Any], message_id: str | None = None
) -> str:
    """Add a notification inside the caller's transaction; return its message id (the ``webhook-id``).

    Enqueuing an existing ``message_id`` again changes nothing, so a replayed event that derives its
    message id from what caused it notifies once.
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"notification url must be http(s), got {url!r}")
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    # the exact bytes are stored: every attempt sends (and signs) the same body
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    await conn.execute(
        insert(notifications)
        .values(message_id=message_id, target=target, url=url, payload=body)
        .on_conflict_do_nothing(index_elements=[notifications.c.message_id])
    )
    return message_id


@dataclass(frozen=True)
class _Claimed:
    id: int
    message_id: str
    target: str
    url: str
    payload: str
    attempts: int


class Notifier:
    """Sends due notifications until cancelled; ``wake()`` after enqueuing to send without waiting."""

    def __init__(
        self,
        engine: AsyncEngine,
        http: httpx.AsyncClient,
        secrets: Mapping[str, str],
        *,
        max_attempts: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        lease: float = 60.0,
        batch: int = 50,
        idle_poll: float = 30.0,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        # a lease shorter than one attempt would let a second notifier send a message still in flight
        if lease <= connect_timeout + read_timeout:
            raise ValueError("lease must exceed connect_timeout + read_timeout")
        self._engine = engine
        self._http = http
        self._signers = {target: Webhook(secret) for target, secret in secrets.items()}  # bad secrets fail here
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=read_timeout)
        # httpx's read timeout is per read; a receiver trickling bytes must not outlive the lease either
        self._deadline = connect_timeout + read_timeout
        self._lease = timedelta(seconds=lease)
        self._batch = batch
        self._idle_poll = idle_poll
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Look for due rows now (call after committing an ``enqueue``)."""
        self._wakeup.set()

    async def run(self) -> None:
        """Send until cancelled, sleeping until the next row is due (or ``wake()``, or ``idle_poll``)."""
        trouble = 0.1
        while True:
            try:
                if await self.send_due() == self._batch:
                    continue  # probably more due right now
                # cleared before looking, so a wake() from here on is not lost
                self._wakeup.clear()
                wait = await self._seconds_until_due()
                trouble = 0.1
            except Exception as exc:
                log_retry(log, exc, "notifier failed; retrying in %.1fs", trouble)
                wait, trouble = trouble, min(trouble * 2, 5.0)
            # idle_poll bounds the sleep: another process may enqueue without waking this one
            wait = self._idle_poll if wait is None else min(max(wait, 0.0), self._idle_poll)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races the wake-up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()

    async def send_due(self) -> int:
        """Claim one batch of due rows, attempt each once, record the outcomes; return how many were claimed."""
        claimed = await self._claim()
        await asyncio.gather(*(self._attempt(row) for row in claimed))
        return len(claimed)

    async def _claim(self) -> list[_Claimed]:
        n = notifications
        due = (
            select(n.c.id)
            .where(_PENDING, n.c.next_attempt_at <= func.now())
            .order_by(n.c.next_attempt_at)
            .limit(self._batch)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        claim = (
            update(n)
            .where(n.c.id == due.c.id)
            .values(attempts=n.c.attempts + 1, next_attempt_at=func.now() + self._lease)
            .returning(n.c.id, n.c.message_id, n.c.target, n.c.url, n.c.payload, n.c.attempts)
        )
        async with self._engine.begin() as conn:
            rows = (await conn.execute(claim)).all()
        return [_Claimed(r.id, r.message_id, r.target, r.url, r.payload, r.attempts) for r in rows]

    async def _attempt(self, row: _Claimed) -> None:
        signer = self._signers.get(row.target)
        if signer is None:
            await self._dead(row, f"no signing secret for target {row.target!r}")
            return
        now = self._clock().replace(microsecond=0)
        headers = {
            "webhook-id": row.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(row.message_id, now, row.payload),
            "content-type": "application/json",
        }
        try:
            async with asyncio.timeout(self._deadline):
                response = await self._http.post(
                    row.url, content=row.payload.encode(), headers=headers, timeout=self._timeout
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            await self._failed(row, f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS].rstrip(": "))
            return
        if response.is_success:
            await self._delivered(row)
        elif is_permanent(response.status_code):
            await self._dead(row, _describe(response))
        else:
            await self._failed(row, _describe(response))

    async def _delivered(self, row: _Claimed) -> None:
        # delivery is a fact even if this run's lease ran out and another run reclaimed the row
        await self._record(
            row,
            "delivered",
            None,
            notifications.c.delivered_at.is_(None),
            delivered_at=func.now(),
            dead_at=None,
        )

    async def _failed(self, row: _Claimed, error: str) -> None:
        if row.attempts >= self._max_attempts:
            await self._dead(row, error)
            return
        delay = next_delay(row.attempts, self._rng, self._base_delay, self._max_delay)
        await self._record(
            row,
            "retry",
            error,
            _PENDING,
            notifications.c.attempts == row.attempts,  # still our claim
            next_attempt_at=func.now() + timedelta(seconds=delay),
            last_error=error,
        )

    async def _dead(self, row: _Claimed, error: str) -> None:
        await self._record(
            row, "dead", error, _PENDING, notifications.c.attempts == row.attempts, dead_at=func.now(), last_error=error
        )

    async def _record(self, row: _Claimed, outcome: str, error: str | None, *where: Any, **values: Any) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(notifications).where(notifications.c.id == row.id, *where).values(values)
            )
        if result.rowcount == 0:
            log.warning("notification %s was reclaimed by another run; dropping this %s", row.message_id, outcome)
            return
        OUTCOMES.labels(row.target, outcome).inc()
        if outcome == "dead":
            log.error(
                "notification %s to %s dead after %d attempts: %s", row.message_id, row.target, row.attempts, error
            )
        elif outcome == "retry":
            log.info("notification %s attempt %d failed: %s", row.message_id, row.attempts, error)

    async def _seconds_until_due(self) -> float | None:
        n = notifications
        query = select(func.extract("epoch", func.min(n.c.next_attempt_at) - func.clock_timestamp())).where(_PENDING)
        async with self._engine.connect() as conn:
            seconds = (await conn.execute(query)).scalar()
        # a few ms of slack: waking just before the due time would claim nothing and spin once more
        return None if seconds is None else float(seconds) + 0.005


def _describe(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:_ERROR_CHARS]}".rstrip(": ")
