"""The router's house: the routing state of one routing domain, and the one way it changes.

Every change is a ``Change``: under one lock, inside one transaction, the pure core decides, the decisions are
written with their routing events (outbox and history) and their desktop notices. The handlers (``commands``,
``events``) make changes; the read side (``queries``) only reads. What holds whenever the lock is free: memory
equals the committed tables; nothing reaches desktops (the feed) or wakes the outbox relay before its commit.

A change of its own (``change``, ``run``: an API command, a tick) is applied to memory once committed: a failed
transaction leaves memory untouched.

The consumers apply the records of a fetch as ``Changes`` (issue 12): a ``Change`` per record (a ``kefu.batch``
step), all in one transaction and one commit. Each change is applied to memory as soon as its step ends, so the next
record decides on the state the records before it left; the feed and the relay's wake-up wait for the commit. When
the transaction is lost (a record fails without savepoints, or the commit fails), memory holds changes the tables do
not: it is rebuilt from them (``state_store.load_state``) before the lock is let go, or, should the database be
away, marked stale and rebuilt by the next holder of the lock before anything reads it there.

Why this design, and not one ``RoutingPlan`` carried across the batch's records with its decisions applied after the
commit (memory would then never hold an uncommitted change): the plan's overlay reads through its notes only what
one event's chain needs (a new contact's queue and its free agents); a later record of the batch abandoning a contact
an earlier one opened, or a command for a contact offered in the batch, would read ``state.waiting`` and
``state.offers`` as committed, and so would every handler and notice that reads the state. Making every reader see
through a batch-long overlay is a change of the decision core (another's, being sped up), and its notes grow with
the batch (contacts opened in a plan are ordered by a list scan). Applying as we go reuses ``decide`` and ``apply``
exactly as one record does; a lost batch (rare: a poison record, an outage) costs a rebuild. The price is that
readers that do not take the lock may see a batch's changes before they commit; those that must not (a desktop's
first offers, the API's lists) read through ``settled``.
"""

import asyncio
import collections
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import Channel
from kefu.batch import Steps, Stopped
from services.router import notices
from services.router.adapters import config_store, repository, state_store
from services.router.adapters.feed import AgentFeed, FeedItem, Notice
from services.router.adapters.late_writes import LateWrites
from services.router.conversations import OpenConversations
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
    """One change of the routing state while its transaction is open: what it decided and what it told desktops.
    Its decisions reach memory when its block ends (``RoutingService``); what it tells desktops and the relay, only
    once the transaction has committed."""

    def __init__(self, conn: AsyncConnection, state: RoutingState) -> None:
        self.conn = conn
        self._state = state
        self.decisions: list[Decision] = []
        self.later = LateWrites()  # messages, routing events and notices: written just before the commit
        self.announced = False  # a routing event went into the outbox without a decision (a refused command)
        self.afterwards: list[Callable[[], None]] = []
        self.counts: list[Callable[[], None]] = []

    async def decide(self, event: Event, now: datetime, *, opened: Mapping[str, Any] | None = None) -> list[Decision]:
        """Decide ``event`` against the state as the changes before this one left it, and write the decisions (with
        ``opened``, the row of the contact arriving: ``repository.persist``). One per change: the core plans from the
        state, which the change's own decisions reach only when it ends."""
        decisions = decide(self._state, event, now)
        await self.record(decisions, opened=opened)
        return decisions

    async def record(self, decisions: list[Decision], *, opened: Mapping[str, Any] | None = None) -> None:
        """Write ``decisions``: their rows now, their routing events and what they tell desktops before the
        commit."""
        self.later.events += await repository.persist(self.conn, decisions, opened)
        self.notify(notices.of_decisions(decisions))
        self.decisions += decisions

    def notify(self, items: list[Notice]) -> None:
        """Tell desktops ``items`` (written to the feed before the commit, pushed live after it)."""
        self.later.notices += items

    def then(self, action: Callable[[], None]) -> None:
        """Change memory in a way no decision describes (an agent's profile), with the change's decisions."""
        self.afterwards.append(action)

    def count(self, action: Callable[[], None]) -> None:
        """Count what the change did (a metric), once committed: as its effects show in memory, not before."""
        self.counts.append(action)


class Changes:
    """Changes in one transaction, a step each (``kefu.batch.Steps``): the records of one fetch, one commit.

    A change's decisions reach memory as soon as its step has ended, so the next record decides on them; what the
    changes tell desktops and the relay waits for the commit (``commit``). Should the transaction be lost instead,
    ``RoutingService.changes`` rebuilds memory from the tables before it lets go of the lock."""

    def __init__(self, service: "RoutingService", conn: AsyncConnection) -> None:
        self.conn = conn
        self._service = service
        self._steps = Steps(conn)
        self._ended: list[Change] = []  # applied to memory, not committed yet
        self.savepoints = self._steps.savepoints

    @contextlib.asynccontextmanager
    async def change(self, message: object) -> AsyncIterator[Change]:
        """One record's change, a step (``Stopped`` when it fails, its decisions kept from memory); once it has
        ended, its decisions are applied to memory."""
        async with self._steps.step(message):
            change = Change(self.conn, self._service.state)
            yield change
        self._ended.append(change)
        self._service._apply(change)

    async def commit(self) -> None:
        """Write the changes' late rows (``late_writes``) and commit, then tell desktops and the relay (no await
        between)."""
        ended, self._ended = self._ended, []
        later = LateWrites.of(change.later for change in ended)
        await later.flush(self.conn)
        await self.conn.commit()
        self._service._committed(ended, later.written)


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
        self._conversations = OpenConversations(self.state)
        self.config_version = 0
        self._stale = False  # memory holds changes a lost transaction rolled back: rebuilt before it is read
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
            self._replace(await state_store.load_state(conn, queues, self.config.default_queue))
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
        async with self._locked():
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
            self.config, self.config_version = config, version
            self._replace(rebuilt)
            self._warned_unservable.clear()
            self._warn_unservable(w.ref for w in self.state.waiting.values())
        return version

    def _replace(self, state: RoutingState) -> None:
        """Memory is ``state``, as read from the tables."""
        self.state, self._conversations, self._stale = state, OpenConversations(state), False

    def open_contact(self, conversation_key: str) -> UUID | None:
        """The open contact of a conversation, if there is one (the lock held: as the tables have it)."""
        return self._conversations.get(conversation_key)

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """The lock, and memory equal to the committed tables (rebuilt first if a lost transaction left it not)."""
        async with self._lock:
            if self._stale:
                await self._rebuild()
            yield

    async def _rebuild(self) -> None:
        """Memory from the tables again, under the lock (``state_store.load_state``, as at start); the business
        hours the ticks saw are kept (no change writes them). Raises when the tables cannot be read: memory then
        stays stale, and the next holder of the lock tries again."""
        queues = {q.id: q.to_domain() for q in self.config.queues}
        async with self.engine.connect() as conn:
            rebuilt = await state_store.load_state(conn, queues, self.config.default_queue)
        rebuilt.hours_open = dict(self.state.hours_open)
        self._replace(rebuilt)
        log.info("routing state rebuilt from the tables after a rolled-back batch")

    async def _lost(self, conn: AsyncConnection, failure: BaseException) -> None:
        """The batch's transaction is lost (by ``failure``), with changes memory already has: roll it back and
        rebuild memory; else (cancelled, or the database away) leave it stale for the next holder of the lock."""
        self._stale = True
        if not isinstance(failure, Exception):
            return  # cancelled: the connection rolls back as it closes
        try:
            await conn.rollback()
            await self._rebuild()
        except Exception as exc:
            log.warning("routing state not rebuilt (%s); the next change rebuilds it", type(exc).__name__)

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[Change]:
        """A change: the lock held and a transaction open for the block, applied to memory once it commits."""
        async with self._locked():
            async with self.engine.begin() as conn:
                change = Change(conn, self.state)
                yield change
                await change.later.flush(conn)
            self._apply(change)
            self._committed([change], change.later.written)

    @contextlib.asynccontextmanager
    async def changes(self) -> AsyncIterator[Changes]:
        """Changes in one transaction and one commit (``Changes``: a step each, applied to memory as each ends), the
        lock held for them all.

        When one raises ``Stopped``, the changes before it are committed (steps with savepoints: its own never
        reached memory), or the transaction is rolled back and ``Stopped(0, at=...)`` raised: the caller applies
        them again. Any other failure, the commit's included, loses the whole batch and is raised as it is. Memory
        is rebuilt from the tables whenever the transaction is lost after a change reached it, before the lock is
        let go: it never shows what was not committed once the lock is free."""
        async with self._locked(), self.engine.connect() as conn:
            batch = Changes(self, conn)
            try:
                yield batch
            except Stopped as stopped:
                if not batch.savepoints:  # the transaction is lost: every change goes again
                    await self._lost(conn, stopped)
                    raise Stopped(0, stopped.cause, at=stopped.at) from stopped.cause
                await self._commit_or_lose(batch, conn)
                raise
            except BaseException as exc:
                await self._lost(conn, exc)
                raise
            await self._commit_or_lose(batch, conn)

    async def _commit_or_lose(self, batch: Changes, conn: AsyncConnection) -> None:
        try:
            await batch.commit()
        except BaseException as exc:
            await self._lost(conn, exc)
            raise

    @contextlib.asynccontextmanager
    async def settled(self) -> AsyncIterator[RoutingState]:
        """The state as committed, with no change under way: what a reader that also reads the tables, or that
        must show nothing uncommitted (a desktop's first offers), reads."""
        async with self._locked():
            yield self.state

    async def run(self, event: Event) -> list[Decision]:
        """Decide ``event`` now and carry the decisions out (a change only when there are some)."""
        async with self._locked():
            with DECISION_SECONDS.time():
                decisions = decide(self.state, event, self.clock())
                if decisions:
                    async with self.engine.begin() as conn:
                        change = Change(conn, self.state)
                        await change.record(decisions)
                        await change.later.flush(conn)
                    self._apply(change)
                    self._committed([change], change.later.written)
        return decisions

    def _apply(self, change: Change) -> None:
        """Make a change true in memory: its decisions, then what else it changes."""
        apply(self.state, change.decisions)
        self._conversations.apply(change.decisions)
        for action in change.afterwards:
            action()
        self._warn_unservable(
            d.contact if isinstance(d, Enqueued) else d.new
            for d in change.decisions
            if isinstance(d, Enqueued | Requeued)
        )

    def _committed(self, changes: list[Change], written: list[FeedItem]) -> None:
        """Once ``changes`` are committed (and in memory): count them, wake the relay, push the feed items they
        ``written``."""
        announced = False
        for change in changes:
            for count in change.counts:
                count()
            announced = announced or bool(change.decisions) or change.announced
        if announced:
            self._on_commit()  # the outbox has rows for the relay
        self._feed.publish(written)  # after apply: a new desktop's snapshot and the feed's last id agree

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
