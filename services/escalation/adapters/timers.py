"""Durable timers in ``escalation.timers``: scheduled by key, cancelled, and read by the runner that fires them
(``adapters.timer_runner``).

Scheduling is idempotent by key and the first schedule wins: a second ``schedule`` with the same key,
pending, fired or cancelled, changes nothing (not the due time either). Keys name one occurrence of a
trigger (``sla.first_response:<contact>:<queued event id>``), so a replayed event lands on the same key
and cannot postpone or revive its timer; to move a timer, cancel it and schedule under a new key.
"""

import json
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.escalation.adapters.orm import timers


@dataclass(frozen=True, slots=True)
class Timer:
    """A stored timer, as the runner hands it to its handler."""

    id: uuid.UUID
    key: str
    kind: str
    due_at: datetime
    contact_id: uuid.UUID | None
    case_id: uuid.UUID | None
    payload: dict[str, Any]
    created_at: datetime
    fired_at: datetime | None
    cancelled_at: datetime | None


COLUMNS = (  # what a Timer is read from
    timers.c.id,
    timers.c.key,
    timers.c.kind,
    timers.c.due_at,
    timers.c.contact_id,
    timers.c.case_id,
    timers.c.payload,
    timers.c.created_at,
    timers.c.fired_at,
    timers.c.cancelled_at,
)
PENDING = and_(timers.c.fired_at.is_(None), timers.c.cancelled_at.is_(None))
"""A timer neither fired nor cancelled: the only kind scheduling leaves alone and the runner fires."""
_SCHEDULE = insert(timers).on_conflict_do_nothing(index_elements=[timers.c.key]).returning(timers.c.id)


def timer_of(row: Row[*tuple[Any, ...]]) -> Timer:
    """The timer a row of ``COLUMNS`` holds (its payload is stored as JSON text)."""
    return Timer(
        id=row.id,
        key=row.key,
        kind=row.kind,
        due_at=row.due_at,
        contact_id=row.contact_id,
        case_id=row.case_id,
        payload=json.loads(row.payload),
        created_at=row.created_at,
        fired_at=row.fired_at,
        cancelled_at=row.cancelled_at,
    )


def timer_row(
    key: str,
    kind: str,
    due_at: datetime,
    *,
    contact_id: uuid.UUID | None = None,
    case_id: uuid.UUID | None = None,
    payload: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One timer for ``TimerStore.schedule_all``."""
    if due_at.tzinfo is None:
        raise ValueError("due_at must be timezone-aware")
    return {
        "id": uuid.uuid4(),
        "key": key,
        "kind": kind,
        "due_at": due_at,
        "contact_id": contact_id,
        "case_id": case_id,
        "payload": json.dumps(dict(payload or {}), sort_keys=True, default=str),
    }


class TimerStore:
    """Schedules and cancels timers; ``wake`` (a runner's) is called after a schedule it committed itself."""

    def __init__(self, engine: AsyncEngine, *, wake: Callable[[], None] | None = None) -> None:
        self._engine = engine
        self._wake = wake

    async def schedule(
        self,
        key: str,
        kind: str,
        due_at: datetime,
        *,
        contact_id: uuid.UUID | None = None,
        case_id: uuid.UUID | None = None,
        payload: Mapping[str, Any] | None = None,
        conn: AsyncConnection | None = None,
    ) -> bool:
        """Schedule a timer unless ``key`` exists (first schedule wins); True if this call created it.

        With ``conn`` the timer joins the caller's transaction, and the caller wakes the runner after
        its commit (waking earlier would let the runner look before the row is visible).
        """
        row = timer_row(key, kind, due_at, contact_id=contact_id, case_id=case_id, payload=payload)
        if conn is not None:
            return await self.schedule_all(conn, [row]) > 0
        async with self._engine.begin() as own:
            created = await self.schedule_all(own, [row]) > 0
        if created and self._wake is not None:
            self._wake()
        return created

    @staticmethod
    async def schedule_all(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
        """Schedule ``rows`` (from ``timer_row``) in one statement of the caller's transaction, each unless its
        key exists; return how many this call created (the caller wakes the runner after its commit if any)."""
        if not rows:
            return 0
        # an executemany of one statement built once: a VALUES list of as many rows is compiled anew each time
        return len((await conn.execute(_SCHEDULE, list(rows))).all())

    async def cancel(self, key: str, *, conn: AsyncConnection | None = None) -> bool:
        """Cancel the pending timer ``key``; False if there is none (unknown, fired or cancelled)."""
        return await self._cancel(timers.c.key == key, conn) > 0

    async def cancel_for_contact(
        self,
        contact_id: uuid.UUID,
        *,
        kinds: Collection[str] | None = None,
        prefix: str | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """Cancel the contact's pending timers (of ``kinds``, keys starting with ``prefix``, if given); how many."""
        condition = timers.c.contact_id == contact_id
        if kinds is not None:
            condition = and_(condition, timers.c.kind.in_(list(kinds)))
        if prefix is not None:
            condition = and_(condition, timers.c.key.startswith(prefix, autoescape=True))
        return await self._cancel(condition, conn)

    async def get(self, key: str) -> Timer | None:
        """The timer ``key`` in whatever state it is."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*COLUMNS).where(timers.c.key == key))).first()
        return None if row is None else timer_of(row)

    async def _cancel(self, condition: ColumnElement[bool], conn: AsyncConnection | None) -> int:
        statement = update(timers).where(condition, PENDING).values(cancelled_at=func.now())
        if conn is not None:
            return (await conn.execute(statement)).rowcount
        async with self._engine.begin() as own:
            return (await own.execute(statement)).rowcount
