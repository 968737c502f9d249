"""The timers one transaction schedules and cancels, written together before its commit (issue 12): the rows to
create in one statement, the cancellations of timers that existed before in one more, whatever the number of records
that asked for them.

What the table ends up holding is what writing each when asked would have left: the first schedule of a key wins
(one scheduled earlier in the transaction as well as one in the table), a cancellation cancels the timers scheduled
before it in the transaction (they are created cancelled) and the pending ones in the table, and a timer scheduled
after a cancellation is created pending. The cancellations run before the new rows are written, so they reach only
the timers that existed before the transaction (or its last ``flush``).
"""

import uuid
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation.adapters.orm import timers
from services.escalation.adapters.timers import PENDING

_CREATE = insert(timers).on_conflict_do_nothing(index_elements=[timers.c.key]).returning(timers.c.id)
_CREATE_CANCELLED = (
    insert(timers)
    .values(cancelled_at=func.now())
    .on_conflict_do_nothing(index_elements=[timers.c.key])
    .returning(timers.c.id)
)
_CANCEL = (
    update(timers)
    .where(
        timers.c.contact_id == bindparam("b_contact_id"),
        timers.c.key.like(bindparam("b_keys"), escape="/"),
        PENDING,
    )
    .values(cancelled_at=func.now())
)


class TimerWrites:
    """Timers scheduled and cancelled, not written yet (see the module docstring)."""

    def __init__(self) -> None:
        self.discard()

    def discard(self) -> None:
        """Forget what was asked since the last ``flush`` (the transaction's changes are being rolled back)."""
        self._rows: dict[str, dict[str, Any]] = {}  # by key, the first schedule's
        self._cancelled: set[str] = set()  # keys of rows scheduled, then cancelled
        self._cancels: list[dict[str, Any]] = []

    def scheduled(self, key: str) -> bool:
        """Whether a timer of ``key`` was scheduled since the last ``flush`` (scheduling it again changes nothing)."""
        return key in self._rows

    def schedule(self, row: dict[str, Any]) -> None:
        """Schedule ``row`` (``timers.timer_row``) unless its key exists by then."""
        self._rows.setdefault(row["key"], row)

    def cancel(self, contact_id: uuid.UUID, *, prefix: str = "") -> None:
        """Cancel the contact's pending timers whose keys start with ``prefix``."""
        for key, row in self._rows.items():
            if row["contact_id"] == contact_id and key.startswith(prefix):
                self._cancelled.add(key)
        escaped = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
        self._cancels.append({"b_contact_id": contact_id, "b_keys": f"{escaped}%"})

    async def flush(self, conn: AsyncConnection) -> int:
        """Write what was asked since the last flush; how many timers it created."""
        if self._cancels:
            await conn.execute(_CANCEL, self._cancels)
        pending = [row for key, row in self._rows.items() if key not in self._cancelled]
        cancelled = [row for key, row in self._rows.items() if key in self._cancelled]
        self.discard()
        created = 0
        for statement, rows in ((_CREATE, pending), (_CREATE_CANCELLED, cancelled)):
            if rows:
                created += len((await conn.execute(statement, rows)).all())
        return created
