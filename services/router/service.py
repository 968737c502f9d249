"""The router's house: the routing state of one routing domain, and the one way it changes.

Every change is a ``Change``: under one lock, inside one transaction, the pure core decides, the decisions are
written with their routing events (outbox and history) and their desktop notices; only once the transaction has
committed are they applied to the in-memory state and pushed to desktops. A failed transaction leaves memory
untouched. The handlers (``commands``, ``events``) make changes; the read side (``queries``) only reads.

The consumers apply the records of a fetch as ``Changes`` (issue 12): a ``Change`` per record (a ``kefu.batch`` step),
in one transaction until a change that changes memory, which commits it (memory still changes only once committed,
and the next record decides on it). A record that fails loses what was not committed yet, and the loop applies it
again (``kefu.batch.Stopped``).
"""

import asyncio
import collections
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import Channel
from kefu.batch import Steps, Stopped
from services.router import notices
from services.router.adapters import config_store, feed_store, repository, state_store
from services.router.adapters.feed import AgentFeed, FeedItem, Notice
from services.router.domain.config import RoutingConfig, parse_routing
from services.router.domain.decide import apply, decide
from services.router.domain.decisions import Decision, Enqueued, Event, Requeued
from services.router.domain.model import ContactRef, RoutingState
from services.router.exceptions import WrongState

log = logging.getLogger(__name__)

DECISION_SECONDS = Histogram(
    "kefu_router_decision_seconds",
    "Time to decide, persist and apply one event",
    buckets=(0.001, 0.005, 0.02, 0.1, 1),
)


class _Unservable(Collector):
    """``kefu_router_unservable_contacts``: counted from the routing state when scraped (one scan, not per event)."""

    def __init__(self) -> None:
        self.services: weakref.WeakSet[RoutingService] = weakref.WeakSet()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kefu_router_unservable_contacts",
            "Waiting contacts no agent, in any presence, can ever serve (skills, group, a slot on the channel)",
            labels=["queue", "channel"],
        )
        counts: collections.Counter[tuple[str, Channel]] = collections.Counter()
        for service in list(self.services):
            counts.update(service.state.index().unservable())
        for (queue_id, channel), count in sorted(counts.items()):
            family.add_metric([queue_id, channel.value], count)
        yield family


UNSERVABLE = _Unservable()
REGISTRY.register(UNSERVABLE)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Change:
    """One change of the routing state while its transaction is open: what it decided and what it told desktops,
    applied to memory only once ``conn``'s transaction has committed (``RoutingService.change``)."""

    def __init__(self, conn: AsyncConnection, state: RoutingState) -> None:
        self.conn = conn
        self._state = state
        self.decisions: list[Decision] = []
        self.written: list[FeedItem] = []
        self.announced = False  # a routing event went into the outbox without a decision (a refused command)
        self.afterwards: list[Callable[[], None]] = []
        self.counts: list[Callable[[], None]] = []

    async def decide(self, event: Event, now: datetime) -> list[Decision]:
        """Decide ``event`` against the state as committed, and write the decisions. One per change: the core plans
        from the state, which the change's own decisions do not reach before the commit."""
        decisions = decide(self._state, event, now)
        await self.record(decisions)
        return decisions

    async def record(self, decisions: list[Decision]) -> None:
        """Write ``decisions``: their rows, their routing events and what they tell desktops."""
        await repository.persist(self.conn, decisions)
        await self.notify(notices.of_decisions(decisions))
        self.decisions += decisions

    async def notify(self, items: list[Notice]) -> None:
        """Tell desktops ``items`` (written to the feed now, pushed live after the commit)."""
        self.written += await feed_store.append(self.conn, items)

    def then(self, action: Callable[[], None]) -> None:
        """Change memory in a way no decision describes (an agent's profile), after the commit."""
        self.afterwards.append(action)

    def count(self, action: Callable[[], None]) -> None:
        """Count what the change did (a metric), once committed: as its effects show in memory, not before."""
        self.counts.append(action)


class Changes:
    """Changes in one transaction, a step each (``kefu.batch.Steps``): the records of one fetch.

    Memory changes only once a change is committed, as with ``RoutingService.change``, and the next record decides on
    it: so a change with decisions (or another change of memory) commits the transaction at once, with the changes
    released before it, and the records after it go on in the next one. Changes that only write (a message appended
    to an open contact, a duplicate, a refused command) share one."""

    def __init__(self, service: "RoutingService", conn: AsyncConnection) -> None:
        self.conn = conn
        self._service = service
        self._steps = Steps(conn)
        self._released: list[Change] = []  # since the last commit
        self.committed = 0  # records committed so far
        self.savepoints = self._steps.savepoints

    @contextlib.asynccontextmanager
    async def change(self, message: object) -> AsyncIterator[Change]:
        """One record's change, a step (``Stopped`` when it fails); committed at once if it changes memory."""
        async with self._steps.step(message):
            change = Change(self.conn, self._service.state)
            yield change
        self._released.append(change)
        if change.decisions or change.afterwards:
            await self.commit()

    async def commit(self) -> None:
        """Commit the changes released so far, then apply them to memory and tell desktops (no await between)."""
        await self.conn.commit()
        self.committed = self._steps.applied
        released, self._released = self._released, []
        for change in released:
            self._service._apply_committed(change)


class RoutingService:
    """Owns the routing state of one routing domain, its configuration, and the lock every change takes."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        config: RoutingConfig,
        feed: AgentFeed,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.config = config
        self.clock = clock
        self._feed = feed
        self._on_commit = on_commit
        self._lock = asyncio.Lock()
        self.state = RoutingState(queues={q.id: q.to_domain() for q in config.queues})
        self.config_version = 0
        self._warned_unservable: set[tuple[str, Channel]] = set()
        UNSERVABLE.services.add(self)

    async def start(self, config_text: str, config_path: Path) -> None:
        """Apply the routing configuration (the file if it changed, else the latest version) and rebuild the
        state from PostgreSQL."""
        async with self._lock, self.engine.begin() as conn:
            stored = await config_store.latest(conn)
            if stored is None or await config_store.file_changed(conn, config_text):
                self.config_version = await config_store.record(
                    conn, source="file", text=config_text, applied_by=str(config_path)
                )
            else:
                self.config = parse_routing(stored.text, Path(f"config version {stored.version}"))
                self.config_version = stored.version
            await state_store.upsert_agents(conn, self.config.agents, self.clock())
            queues = {q.id: q.to_domain() for q in self.config.queues}
            self.state = await state_store.load_state(conn, queues, self.config.default_queue)
        self._warn_unservable(w.ref for w in self.state.waiting.values())
        log.info(
            "routing state loaded: %d agents, %d waiting, %d offers, %d assignments",
            len(self.state.agents),
            len(self.state.waiting),
            len(self.state.offers),
            len(self.state.assignments),
        )

    async def reconfigure(self, config: RoutingConfig, text: str, applied_by: str) -> int:
        """Make ``config`` the routing configuration, as a new version, and rebuild the state for it; return the
        version. Refused while a queue it drops still holds contacts."""
        async with self._lock:
            queues = {q.id: q.to_domain() for q in config.queues}
            in_use = {w.ref.queue_id for w in self.state.waiting.values()}
            in_use |= {a.contact.queue_id for a in self.state.assignments.values()}
            dropped = sorted(in_use - queues.keys())
            if dropped:
                raise WrongState(f"queue(s) {dropped} still hold contacts: move or finish them before removing")
            async with self.engine.begin() as conn:
                version = await config_store.record(conn, source="api", text=text, applied_by=applied_by)
                await state_store.upsert_agents(conn, config.agents, self.clock())
                rebuilt = await state_store.load_state(conn, queues, config.default_queue)
            self.config, self.state, self.config_version = config, rebuilt, version
            self._warned_unservable.clear()
            self._warn_unservable(w.ref for w in self.state.waiting.values())
        return version

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[Change]:
        """A change: the lock held and a transaction open for the block, applied to memory once it commits."""
        async with self._lock:
            async with self.engine.begin() as conn:
                change = Change(conn, self.state)
                yield change
            self._apply_committed(change)

    @contextlib.asynccontextmanager
    async def changes(self) -> AsyncIterator[Changes]:
        """Changes in one transaction (``Changes``: a step each, a commit at each that changes memory), the lock
        held for them all.

        When one raises ``Stopped``, the changes before it are committed (steps with savepoints) or those since the
        last commit rolled back with it, and ``Stopped`` raised on, saying which. Any other failure
        loses what was not committed yet: raised as it is when that is every change, else as ``Stopped`` after those
        committed."""
        async with self._lock, self.engine.connect() as conn:
            batch = Changes(self, conn)
            try:
                try:
                    yield batch
                except Stopped as stopped:
                    if not batch.savepoints:  # the transaction is lost: those since the last commit go again
                        await conn.rollback()
                        raise Stopped(batch.committed, stopped.cause, at=stopped.at) from stopped.cause
                    await batch.commit()
                    raise
                await batch.commit()
            except Stopped:
                raise
            except Exception as exc:
                if batch.committed:
                    raise Stopped(batch.committed, exc) from exc
                raise

    @contextlib.asynccontextmanager
    async def settled(self) -> AsyncIterator[RoutingState]:
        """The state with no change between its commit and its apply: what a reader that also reads the tables
        must see, so that both agree."""
        async with self._lock:
            yield self.state

    async def run(self, event: Event) -> list[Decision]:
        """Decide ``event`` now and carry the decisions out (a change only when there are some)."""
        async with self._lock:
            with DECISION_SECONDS.time():
                decisions = decide(self.state, event, self.clock())
                if decisions:
                    async with self.engine.begin() as conn:
                        change = Change(conn, self.state)
                        await change.record(decisions)
                    self._apply_committed(change)
        return decisions

    def _apply_committed(self, change: Change) -> None:
        apply(self.state, change.decisions)
        for action in change.afterwards:
            action()
        self._warn_unservable(
            d.contact if isinstance(d, Enqueued) else d.new
            for d in change.decisions
            if isinstance(d, Enqueued | Requeued)
        )
        for count in change.counts:
            count()
        if change.decisions or change.announced:
            self._on_commit()  # the outbox has rows for the relay
        self._feed.publish(change.written)  # after apply: a new desktop's snapshot and the feed's last id agree

    def _warn_unservable(self, refs: Iterable[ContactRef]) -> None:
        """Say once per (queue, channel) that a contact waits where no agent, in any presence, can ever serve it."""
        index = self.state.index()
        for ref in refs:
            if index.can_ever_serve(ref.queue_id, ref.channel):
                continue
            if (ref.queue_id, ref.channel) not in self._warned_unservable:
                self._warned_unservable.add((ref.queue_id, ref.channel))
                log.warning(
                    "contact %s waits in queue %r on channel %s, which no agent can serve (skills, group and a %s "
                    "slot): give an agent that capacity, or route the channel elsewhere",
                    ref.id,
                    ref.queue_id,
                    ref.channel.value,
                    ref.channel.value,
                    extra={"contact_id": str(ref.id), "queue_id": ref.queue_id, "channel": ref.channel.value},
                )
