"""The router's service layer: one lock-protected loop of decide → persist → apply → notify.

All changes to routing state go through ``_run``: the pure core decides, the decisions and their
outbox events are written in one transaction, and only after the commit are they applied to the
in-memory state and pushed to desktops. A failed transaction leaves memory untouched.
"""

import asyncio
import collections
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import CONTACTS, ROUTING_COMMANDS, Channel, ContactEvent, ContactEventKind, RoutingCommand
from kefu.logs import bind
from services.router import notices
from services.router.adapters import (
    access,
    config_store,
    contact_store,
    customers,
    feed_store,
    repository,
    shifts,
    state_store,
    stats,
    timeline,
)
from services.router.adapters.feed import AgentFeed, FeedItem
from services.router.adapters.orm import offers
from services.router.domain.config import AgentConfig, CustomerTier, RoutingConfig, parse_routing
from services.router.domain.decide import apply, decide, is_due
from services.router.domain.decisions import (
    Assigned,
    AssignmentCompleted,
    ClockTicked,
    ContactAbandoned,
    ContactArrived,
    ContactMoved,
    Decision,
    Enqueued,
    Event,
    OfferAccepted,
    OfferDeclined,
    PresenceRequested,
    Requeued,
)
from services.router.domain.model import Agent, Assignment, ContactRef, Presence, RoutingState
from services.router.domain.preconditions import refusal
from services.router.exceptions import (
    NotYours,
    UnknownAgent,
    UnknownAssignment,
    UnknownContact,
    UnknownCustomer,
    UnknownOffer,
    UnknownQueue,
    WrongState,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TransferTarget:
    """Where a transfer sends a contact: a queue (the current one when absent), an agent, or both."""

    queue_id: str | None = None
    agent_id: str | None = None
    wait_seconds: float = 120.0  # how long a contact transferred to an agent waits for that agent
    priority: int | None = None
    reason: str | None = None


CONTACTS_APPLIED = Counter("kefu_router_contact_events_total", "Contact events consumed", ["outcome"])
COMMANDS_APPLIED = Counter("kefu_router_commands_total", "Routing commands consumed", ["outcome"])
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

DEFAULT_ANSWER_WITHIN_SECONDS = 20
ESCALATION_AGENT_WAIT = timedelta(minutes=5)  # an escalation to one agent (a TAM) waits this long for them first


def utcnow() -> datetime:
    return datetime.now(UTC)


class RoutingService:
    """Owns the routing state of one routing domain."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        config: RoutingConfig,
        feed: AgentFeed,
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._config = config
        self._feed = feed
        self._on_commit = on_commit
        self._clock = clock
        self._lock = asyncio.Lock()
        self.state = RoutingState(queues={q.id: q.to_domain() for q in config.queues})
        self.config_version = 0
        self._warned_unservable: set[tuple[str, Channel]] = set()
        UNSERVABLE.services.add(self)

    async def start(self, config_text: str, config_path: Path) -> None:
        """Apply the routing configuration (the file if it changed, else the latest version) and rebuild the
        state from PostgreSQL."""
        async with self._lock, self._engine.begin() as conn:
            stored = await config_store.latest(conn)
            if stored is None or await config_store.file_changed(conn, config_text):
                self.config_version = await config_store.record(
                    conn, source="file", text=config_text, applied_by=str(config_path)
                )
            else:
                self._config = parse_routing(stored.text, Path(f"config version {stored.version}"))
                self.config_version = stored.version
            await state_store.upsert_agents(conn, self._config.agents, self._clock())
            queues = {q.id: q.to_domain() for q in self._config.queues}
            self.state = await state_store.load_state(conn, queues, self._config.default_queue)
        self._warn_unservable(w.ref for w in self.state.waiting.values())
        log.info(
            "routing state loaded: %d agents, %d waiting, %d offers, %d assignments",
            len(self.state.agents),
            len(self.state.waiting),
            len(self.state.offers),
            len(self.state.assignments),
        )

    # ---- commands ----

    async def handle_contact(self, event: ContactEvent) -> None:
        """Apply one inbound contact event, once: open a contact, append to the open one, or abandon it."""
        async with self._lock:
            now = self._clock()
            decisions: list[Decision] = []
            written: list[FeedItem] = []
            async with self._engine.begin() as conn:
                if not await contact_store.mark_applied(conn, event.event_id, CONTACTS):
                    CONTACTS_APPLIED.labels("duplicate").inc()
                    return
                existing = await contact_store.open_contact_for(conn, event.conversation_key)
                bind(contact_id=existing[0] if existing is not None else None)
                if event.kind is ContactEventKind.ABANDONED:
                    if existing is not None:
                        decisions = decide(self.state, ContactAbandoned(existing[0]), now)
                        written = await self._persist(conn, decisions)
                    outcome = "abandoned" if decisions else "abandon_ignored"
                elif existing is not None:
                    await customers.resolve(conn, event.channel, event.customer)
                    await contact_store.insert_message(conn, existing[0], event)
                    written = await feed_store.append(conn, notices.of_message(self.state, existing[0], event))
                    outcome = "appended"
                else:
                    customer_id = await customers.resolve(conn, event.channel, event.customer)
                    ref = await self._new_contact(conn, event, customer_id, now)
                    bind(contact_id=ref.id)
                    await contact_store.insert_contact(conn, ref, event, customer_id)
                    await contact_store.insert_message(conn, ref.id, event)
                    decisions = decide(self.state, ContactArrived(ref), now)
                    written = await self._persist(conn, decisions)
                    outcome = "opened"
            self._committed(decisions, written)
            CONTACTS_APPLIED.labels(outcome).inc()

    async def link_identity(self, customer_id: UUID, channel: Channel, platform_id: str) -> dict[str, Any]:
        """Attach an identity (and whatever its customer had) to ``customer_id``; return the customer."""
        async with self._lock, self._engine.begin() as conn:
            if not await customers.exists(conn, customer_id):
                raise UnknownCustomer(f"no customer {customer_id}")
            await customers.link(conn, customer_id, channel, platform_id)
            found = await customers.view(conn, customer_id)
        assert found is not None
        return found

    async def customer(self, customer_id: UUID) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            found = await customers.view(conn, customer_id)
        if found is None:
            raise UnknownCustomer(f"no customer {customer_id}")
        return found

    async def contact_readers(self, contact_id: UUID) -> set[str]:
        """The agents that may read the contact: they hold or held an assignment, or have an open offer, of it."""
        async with self._engine.connect() as conn:
            return await access.contact_readers(conn, contact_id)

    async def customer_readers(self, customer_id: UUID) -> set[str]:
        """The agents that may read the customer: readers of any of its contacts."""
        async with self._engine.connect() as conn:
            return await access.customer_readers(conn, customer_id)

    async def contact(self, contact_id: UUID) -> dict[str, Any]:
        """A contact with its messages, oldest first."""
        async with self._engine.connect() as conn:
            found = await timeline.contact_view(conn, contact_id)
        if found is None:
            raise UnknownContact(f"no contact {contact_id}")
        return found

    async def upsert_agent(self, config: AgentConfig) -> Agent:
        """Create an agent, or update its name, groups, skills and capacity (presence and work are kept)."""
        async with self._lock:
            async with self._engine.begin() as conn:
                await state_store.upsert_agents(conn, [config], self._clock())
            agent = self.state.agents.get(config.id)
            if agent is None:
                agent = Agent(
                    id=config.id,
                    name=config.name,
                    groups=tuple(config.groups),
                    skills=dict(config.skills),
                    capacity=dict(config.capacity),
                    presence=config.initial_presence,
                    idle_since=self._clock(),
                )
                self.state.agents[agent.id] = agent
            else:
                agent.name, agent.groups = config.name, tuple(config.groups)
                agent.skills, agent.capacity = dict(config.skills), dict(config.capacity)
            agent.phone_exclusive, agent.max_missed = config.phone_exclusive, config.max_missed_offers
            agent.wrap_up = timedelta(seconds=config.wrap_up_seconds)
            self.state.reindex()  # which queues the agent may serve has changed
        if agent.presence is Presence.AVAILABLE:
            await self.set_presence(agent.id, Presence.AVAILABLE)  # new skills or slots may take waiting work
        return agent

    async def apply_config(self, config: RoutingConfig, text: str, applied_by: str) -> int:
        """Make ``config`` the routing configuration, as a new version; return its number."""
        async with self._lock:
            queues = {q.id: q.to_domain() for q in config.queues}
            in_use = {w.ref.queue_id for w in self.state.waiting.values()}
            in_use |= {a.contact.queue_id for a in self.state.assignments.values()}
            dropped = sorted(in_use - queues.keys())
            if dropped:
                raise WrongState(f"queue(s) {dropped} still hold contacts: move or finish them before removing")
            async with self._engine.begin() as conn:
                version = await config_store.record(conn, source="api", text=text, applied_by=applied_by)
                await state_store.upsert_agents(conn, config.agents, self._clock())
                rebuilt = await state_store.load_state(conn, queues, config.default_queue)
            self._config, self.state, self.config_version = config, rebuilt, version
            self._warned_unservable.clear()
            self._warn_unservable(w.ref for w in self.state.waiting.values())
        for agent in [a for a in self.state.agents.values() if a.presence is Presence.AVAILABLE]:
            await self.set_presence(agent.id, Presence.AVAILABLE)  # new queues or skills may match waiting work
        return version

    async def current_config(self) -> config_store.Version:
        async with self._engine.connect() as conn:
            found = await config_store.latest(conn)
        assert found is not None, "start() records the first version"
        return found

    def queues_now(self) -> list[dict[str, Any]]:
        """Every queue with what waits in it now."""
        now = self._clock()
        return [stats.live(self.state, queue, now) for queue in self.state.queues.values()]

    async def queue_stats(
        self, queue_id: str, *, window_minutes: int, answer_within_seconds: int | None
    ) -> dict[str, Any]:
        """A queue now and over the last ``window_minutes``, with the estimated wait of a new contact."""
        queue = self.state.queues.get(queue_id)
        if queue is None:
            raise UnknownQueue(f"no queue {queue_id!r}")
        if answer_within_seconds is None:
            answer_within_seconds = round(queue.service_level_seconds or DEFAULT_ANSWER_WITHIN_SECONDS)
        now = self._clock()
        async with self._engine.connect() as conn:
            history = await stats.window(
                conn, queue_id, now=now, minutes=window_minutes, answer_within_seconds=answer_within_seconds
            )
        # What waits now is read after the history, under the lock: a change commits before it is applied to the
        # state, so the state read first, or while a change is between its commit and its apply, could still show
        # a contact waiting that the history already counts as abandoned or answered (both, once, in the
        # wallboard test under load). Waiting for the lock waits for every change the history saw to be applied.
        async with self._lock:
            current = stats.live(self.state, queue, now)
        return {**current, **history, "estimated_wait_seconds": stats.estimated_wait(current, history["aht_seconds"])}

    async def set_presence(self, agent_id: str, presence: Presence) -> None:
        await self._run(PresenceRequested(agent_id, presence))

    async def accept(self, offer_id: UUID, agent_id: str) -> Assignment:
        """``agent_id`` accepts a pending offer made to them."""
        await self._require_pending(offer_id, agent_id)
        decisions = await self._run(OfferAccepted(offer_id, agent_id))
        assigned = next(d for d in decisions if isinstance(d, Assigned))
        return self.state.assignments[assigned.assignment_id]

    async def decline(self, offer_id: UUID, agent_id: str) -> None:
        """``agent_id`` declines a pending offer made to them; the contact goes back to its queue."""
        await self._require_pending(offer_id, agent_id)
        await self._run(OfferDeclined(offer_id, agent_id))

    async def complete(
        self,
        assignment_id: UUID,
        agent_id: str | None,
        *,
        disposition: str | None = None,
        resolved: bool | None = None,
    ) -> None:
        """Complete an open assignment: as its agent, or (``agent_id`` None) as a supervisor."""
        assignment = self.state.assignments.get(assignment_id)
        acting = agent_id if agent_id is not None else (assignment.agent_id if assignment else "")
        await self._run(AssignmentCompleted(assignment_id, acting, disposition, resolved))

    async def transfer(self, assignment_id: UUID, agent_id: str | None, target: TransferTarget) -> ContactRef:
        """Transfer an open assignment to a queue or an agent: the contact waits again, its history kept.

        ``agent_id`` is the transferring agent (None: a supervisor). To an agent, the contact waits for that agent
        for ``target.wait_seconds``, then anyone eligible in the queue takes it.
        """
        assignment = self.state.assignments.get(assignment_id)
        if assignment is None:
            raise UnknownAssignment(f"no open assignment {assignment_id}")
        if agent_id is not None and assignment.agent_id != agent_id:
            raise NotYours(f"assignment {assignment_id} belongs to another agent")
        if target.agent_id is not None and target.agent_id not in self.state.agents:
            raise UnknownAgent(f"no agent {target.agent_id!r}")
        queue_id = target.queue_id or assignment.contact.queue_id
        until = self._clock() + timedelta(seconds=target.wait_seconds) if target.agent_id else None
        reason = target.reason or (
            f"transferred to {target.agent_id}" if target.agent_id else f"transferred to {queue_id}"
        )
        moved = ContactMoved(
            assignment.contact.id,
            queue_id,
            reason,
            priority=target.priority,
            agent_id=agent_id,
            preferred_agent=target.agent_id,
            prefer_until=until,
        )
        await self._run(moved)
        return self._where(assignment.contact.id)

    async def move(self, contact_id: UUID, queue_id: str, reason: str, priority: int | None = None) -> ContactRef:
        """Move a waiting or assigned contact to ``queue_id`` (a supervisor, or an escalation command)."""
        await self._run(ContactMoved(contact_id, queue_id, reason, priority=priority))
        return self._where(contact_id)

    async def handle_command(self, command: RoutingCommand) -> None:
        """Apply a routing command once: move the contact to the target group's queue, at the given priority.

        A command for a contact no longer open, or naming a group no queue serves, is recorded and skipped (logged):
        redelivering it would change nothing.
        """
        async with self._lock:
            decisions: list[Decision] = []
            written: list[FeedItem] = []
            async with self._engine.begin() as conn:
                if not await contact_store.mark_applied(conn, command.command_id, ROUTING_COMMANDS):
                    COMMANDS_APPLIED.labels("duplicate").inc()
                    return
                queue_id = command.target_queue_id or self._config.queue_of_group(command.target_group)
                open_now = command.contact_id in self.state.waiting or any(
                    a.contact.id == command.contact_id for a in self.state.assignments.values()
                )
                if queue_id is None or queue_id not in self.state.queues:
                    log.warning("routing command %s: no queue for group %r", command.command_id, command.target_group)
                    outcome = "no_queue"
                elif (refused := refusal(self.state, command.contact_id, command.precondition)) is not None:
                    # computed from a view that is stale now (an agent accepted meanwhile): the sender looks again
                    await repository.refuse_command(conn, command, refused, self._clock())
                    log.info("routing command %s refused: %s", command.command_id, refused.reason)
                    outcome = "refused"
                elif not open_now:
                    outcome = "contact_closed"
                else:
                    reason = f"{command.type.value} to {command.target_group}: {command.reason}"
                    now = self._clock()
                    agent = command.target_agent_id if command.target_agent_id in self.state.agents else None
                    moved = ContactMoved(
                        command.contact_id,
                        queue_id,
                        reason[:1024],
                        priority=command.priority,
                        preferred_agent=agent,
                        prefer_until=now + ESCALATION_AGENT_WAIT if agent else None,
                    )
                    decisions = decide(self.state, moved, now)
                    written = await self._persist(conn, decisions)
                    outcome = "moved"
            self._committed(decisions, written)
            if outcome == "refused":
                self._on_commit()  # the refusal's routing event is in the outbox
            COMMANDS_APPLIED.labels(outcome).inc()

    def _where(self, contact_id: UUID) -> ContactRef:
        waiting = self.state.waiting.get(contact_id)
        if waiting is not None:
            return waiting.ref
        return next(a.contact for a in self.state.assignments.values() if a.contact.id == contact_id)

    async def tick(self) -> None:
        """Act on whatever came due: offers expire, wrap-ups end, queues open or close, bullseye steps widen,
        overflows and preferences end."""
        if is_due(self.state, self._clock()):
            await self._run(ClockTicked())

    async def _require_pending(self, offer_id: UUID, agent_id: str) -> None:
        """404 for an offer never made to ``agent_id`` (another's looks the same), 409 for one no longer pending."""
        pending = self.state.offers.get(offer_id)
        if pending is not None and pending.agent_id == agent_id:
            return
        async with self._engine.connect() as conn:
            row = await _offer(conn, offer_id)
        if row is None or row[0] != agent_id:
            raise UnknownOffer(f"no offer {offer_id}")
        raise WrongState(f"offer {offer_id} is no longer pending: it was {row[1]}")

    async def _run(self, event: Event) -> list[Decision]:
        async with self._lock:
            with DECISION_SECONDS.time():
                decisions = decide(self.state, event, self._clock())
                if decisions:
                    async with self._engine.begin() as conn:
                        written = await self._persist(conn, decisions)
                    self._committed(decisions, written)
        return decisions

    async def _persist(self, conn: AsyncConnection, decisions: list[Decision]) -> list[FeedItem]:
        """Write the decisions (rows, outbox events) and what they tell desktops, in the caller's transaction."""
        await repository.persist(conn, decisions)
        return await feed_store.append(conn, notices.of_decisions(decisions))

    def _committed(self, decisions: list[Decision], written: list[FeedItem]) -> None:
        apply(self.state, decisions)
        self._warn_unservable(
            d.contact if isinstance(d, Enqueued) else d.new for d in decisions if isinstance(d, Enqueued | Requeued)
        )
        if decisions:
            self._on_commit()
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

    async def set_customer_profile(self, customer_id: UUID, profile: customers.Profile) -> dict[str, Any]:
        """Set a customer's tier and owning TAM (an existing agent); return the customer."""
        if profile.owning_tam is not None and profile.owning_tam not in self.state.agents:
            raise UnknownAgent(f"owning_tam: no agent {profile.owning_tam!r}")
        async with self._engine.begin() as conn:
            if not await customers.set_profile(conn, customer_id, profile):
                raise UnknownCustomer(f"no customer {customer_id}")
            found = await customers.view(conn, customer_id)
        assert found is not None
        return found

    async def stored_shifts(self) -> dict[str, dict[str, Any]]:
        """Agent id -> shift (as stored JSON) for every agent with one."""
        async with self._engine.connect() as conn:
            return await shifts.stored(conn)

    # ---- contact creation: classification and sticky preference ----

    async def _new_contact(
        self, conn: AsyncConnection, event: ContactEvent, customer_id: UUID, now: datetime
    ) -> ContactRef:
        """The first message of a conversation as a contact: classified by the rules (queue, priority, category)
        and, with sticky routing on, waiting a while for the agent who knows the customer."""
        profile = await customers.profile(conn, customer_id)
        placed = self._config.classify(
            channel=event.channel,
            account_id=event.account_id,
            text=event.message.text,
            tier=profile.tier,
            language=event.customer.language,
        )
        preferred, wait = await self._preference(conn, customer_id, profile, now)
        return ContactRef(
            event.event_id,
            event.conversation_key,
            event.channel,
            placed.queue,
            placed.priority,
            now,
            preferred_agent=preferred,
            prefer_until=now + timedelta(seconds=wait) if preferred is not None else None,
            customer_id=customer_id,
            tier=profile.tier.value,
            owning_tam=profile.owning_tam,
            category=placed.category,
        )

    async def _preference(
        self, conn: AsyncConnection, customer_id: UUID, profile: customers.Profile, now: datetime
    ) -> tuple[str | None, float]:
        """The agent a new contact should wait for, and for how many seconds: a key account's owning TAM, else
        the agent of the customer's last assignment within the window; nobody when sticky routing is off."""
        sticky = self._config.sticky
        if sticky is None:
            return None, 0.0
        key_account = profile.tier is CustomerTier.KEY_ACCOUNT and profile.owning_tam in self.state.agents
        if key_account and sticky.key_account_wait_seconds > 0:
            return profile.owning_tam, sticky.key_account_wait_seconds
        if sticky.wait_seconds > 0:
            since = now - timedelta(minutes=sticky.window_minutes)
            last = await customers.last_agent(conn, customer_id, since=since)
            if last in self.state.agents:
                return last, sticky.wait_seconds
        return None, 0.0


async def _offer(conn: AsyncConnection, offer_id: UUID) -> tuple[str, str] | None:
    """The offer's agent and status; None for an offer never made."""
    row = (await conn.execute(select(offers.c.agent_id, offers.c.status).where(offers.c.id == offer_id))).first()
    return None if row is None else (row.agent_id, row.status)
