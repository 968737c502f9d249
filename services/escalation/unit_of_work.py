"""One transaction of the escalation service, and who must hear of it once it has committed.

What a handler writes for others (case events and routing commands in the outbox, notifications, timers) becomes
visible only at the commit, so the loops that carry it out (the outbox relay, the notifier, the timer runner) are woken
after it, not while it is open: woken earlier, they would look, find nothing yet, and sleep on.

The consumers apply the records of a fetch in one transaction (``Transactions.batch``, issue 12): a unit of work per
record, each a step (``kefu.batch.Steps``), and whoever they concern woken once, after the commit. The units of a
batch share its contacts' facts (``adapters.ledger``) and the timers they set (``adapters.timer_writes``), written
once before the commit (``flush``); with savepoints, at the end of each step instead, and forgotten when one fails.
"""

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu.batch import Steps, Stopped
from services.escalation.adapters.ledger import Ledger
from services.escalation.adapters.timer_writes import TimerWrites


@dataclass
class UnitOfWork:
    """A transaction in progress and what it wrote that someone must be woken for after its commit."""

    conn: AsyncConnection
    facts: Ledger  # the contacts' facts as the transaction has changed them
    timers: TimerWrites  # the timers it scheduled and cancelled
    outbound: bool = False  # case events, routing commands or notifications: the relay and the notifier
    due: datetime | None = None  # the earliest due time of the timers it created: the timer runner's next look
    unapplied: set[uuid.UUID] = field(default_factory=set)  # routing events stored for the batch, not applied yet

    @classmethod
    def on(cls, conn: AsyncConnection) -> "UnitOfWork":
        """A unit of work in ``conn``'s transaction; ``flush`` it before the commit."""
        return cls(conn, Ledger(conn), TimerWrites())

    async def flush(self) -> None:
        """Write the facts and timers changed so far."""
        await self.facts.flush()
        self.created(await self.timers.flush(self.conn))

    def created(self, due: datetime | None) -> None:
        """Timers were created, the earliest due at ``due`` (None: none)."""
        if due is not None and (self.due is None or due < self.due):
            self.due = due

    def discard(self) -> None:
        """Forget the facts and timers changed since the last ``flush`` (they are being rolled back)."""
        self.facts.discard()
        self.timers.discard()


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
            unit = UnitOfWork.on(conn)
            yield unit
            await unit.flush()
        self._after_commit(unit)

    @asynccontextmanager
    async def batch(self) -> AsyncIterator["Batch"]:
        """Units of work in one transaction, a step each (``Batch.unit``). When one raises ``Stopped``, those
        before it are committed (steps with savepoints) or rolled back with it, and ``Stopped`` raised on, saying
        which; any other failure commits nothing."""
        stopped: Stopped | None = None
        async with self._engine.begin() as conn:
            batch = Batch(conn)
            try:
                yield batch
            except Stopped as exc:
                if not batch.savepoints:  # the transaction is lost with the record: all of it goes again
                    raise Stopped(0, exc.cause, at=exc.at) from exc.cause
                stopped = exc
            await batch.done.flush()
        self._after_commit(batch.done)
        if stopped is not None:
            raise stopped


class Batch:
    """The units of work of one transaction; ``done`` sums up what the released ones wrote."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._steps = Steps(conn)
        self.done = UnitOfWork.on(conn)
        self.savepoints = self._steps.savepoints

    @asynccontextmanager
    async def unit(self, message: object) -> AsyncIterator[UnitOfWork]:
        """One record's unit of work, a step (``Stopped`` when it fails), sharing the batch's facts and timers."""
        async with self._steps.step(message):
            unit = replace(self.done, outbound=False, due=None)
            try:
                yield unit
                if self.savepoints:  # written in the step's savepoint, which may be rolled back alone
                    await unit.flush()
            except Exception:
                if self.savepoints:  # the batch's facts and timers went back to the last step's end
                    self.done.discard()
                raise
        self.done.outbound = self.done.outbound or unit.outbound
        self.done.created(unit.due)
