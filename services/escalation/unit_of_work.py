"""One transaction of the escalation service, and who must hear of it once it has committed.

What a handler writes for others (case events and routing commands in the outbox, notifications, timers) becomes
visible only at the commit, so the loops that carry it out (the outbox relay, the notifier, the timer runner) are woken
after it, not while it is open: woken earlier, they would look, find nothing yet, and sleep on.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@dataclass
class UnitOfWork:
    """A transaction in progress and what it wrote that someone must be woken for after its commit."""

    conn: AsyncConnection
    outbound: bool = False  # case events, routing commands or notifications: the relay and the notifier
    new_timers: int = 0  # timers created: one may be due before the timer runner's next look


AfterCommit = Callable[[UnitOfWork], None]
"""Wakes whoever a committed unit of work concerns (the service's wiring decides who that is)."""


class Transactions:
    """Begins units of work on ``engine`` and calls ``after_commit`` with each one that committed."""

    def __init__(self, engine: AsyncEngine, after_commit: AfterCommit) -> None:
        self._engine = engine
        self._after_commit = after_commit

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work, committed when the block ends (rolled back, and nobody woken, if it raises)."""
        async with self._engine.begin() as conn:
            unit = UnitOfWork(conn)
            yield unit
        self._after_commit(unit)
