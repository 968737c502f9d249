"""The timers one transaction schedules and cancels, written together before its commit (issue 12): the rows to
create in one statement, the cancellations of timers that existed before in one more, whatever the number of records
that asked for them (``adapters.unnest``).

What the table ends up holding is what writing each when asked would have left: the first schedule of a key wins
(one scheduled earlier in the transaction as well as one in the table), a cancellation cancels the timers scheduled
before it in the transaction (they are created cancelled) and the pending ones in the table, and a timer scheduled
after a cancellation is created pending. The cancellations run before the new rows are written, so they reach only
the timers that existed before the transaction (or its last ``flush``).
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Text, case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.escalation.adapters.orm import timers
from services.escalation.adapters.timers import PENDING
from services.escalation.adapters.unnest import arrays, unnested

_NEW = unnested(
    "scheduled",
    {name: timers.c[name].type for name in ("id", "key", "kind", "due_at", "contact_id", "case_id", "payload")}
    | {"cancelled": Boolean()},
)
_CREATE = (  # rows scheduled, those cancelled after their schedule created cancelled
    insert(timers)
    .from_select(
        [*_NEW.c.keys()[:-1], "cancelled_at"],
        select(*list(_NEW.c)[:-1], case((_NEW.c.cancelled, func.now()))),
    )
    .on_conflict_do_nothing(index_elements=[timers.c.key])
    .returning(timers.c.due_at, timers.c.cancelled_at)
)
_CANCELS = unnested("cancels", {"contact_id": timers.c.contact_id.type, "keys": Text()})
_CANCEL = (
    update(timers)
    .where(timers.c.contact_id == _CANCELS.c.contact_id, timers.c.key.like(_CANCELS.c["keys"], escape="/"), PENDING)
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
        self._cancels.append({"contact_id": contact_id, "keys": f"{escaped}%"})

    async def flush(self, conn: AsyncConnection) -> datetime | None:
        """Write what was asked since the last flush (a statement for the cancellations, one for the new rows);
        the earliest due time of the pending timers it created, if any (the timer runner's next look may be later).
        """
        rows = [row | {"cancelled": key in self._cancelled} for key, row in self._rows.items()]
        cancels = self._cancels
        self.discard()
        if cancels:
            await conn.execute(_CANCEL, arrays(_CANCELS, cancels))
        if not rows:
            return None
        created = await conn.execute(_CREATE, arrays(_NEW, rows))
        return min((due for due, cancelled in created if cancelled is None), default=None)
