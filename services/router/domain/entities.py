"""What the router keeps track of: queues, agents, waiting contacts, offers and assignments.

Plain data, held together by ``RoutingState`` (``model``): the decision core (``decide``) reads it, ``apply`` changes
it, and the repository rebuilds it from PostgreSQL on start. Nothing here knows of the indexes over it (``index``),
so that they can build on these types without the two modules importing each other.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol
from uuid import UUID

from contracts import Channel


class Presence(StrEnum):
    """Whether an agent takes work."""

    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"
    WRAP_UP = "wrap_up"


class RoutingPolicy(StrEnum):
    """How a queue chooses among the agents who may take a contact."""

    LONGEST_IDLE = "longest_idle"
    MOST_PROFICIENT = "most_proficient"
    LEAST_OCCUPIED = "least_occupied"
    ROUND_ROBIN = "round_robin"


# The members the decision core compares with on every event, read once: an enum member read from its class goes
# through ``EnumType.__getattr__``'s hook (measured: ~5x a plain class attribute), a module constant does not.
AVAILABLE, WRAP_UP, AWAY = Presence.AVAILABLE, Presence.WRAP_UP, Presence.AWAY
LONGEST_IDLE, MOST_PROFICIENT = RoutingPolicy.LONGEST_IDLE, RoutingPolicy.MOST_PROFICIENT
LEAST_OCCUPIED, ROUND_ROBIN = RoutingPolicy.LEAST_OCCUPIED, RoutingPolicy.ROUND_ROBIN
PHONE = Channel.PHONE


class Calendar(Protocol):
    """Business hours (``kefu.calendar.BusinessCalendar``): all the decision core asks of them."""

    def is_open(self, at: datetime) -> bool: ...


AfterHours = Literal["hold", "overflow", "close"]
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BullseyeStep:
    """From ``after`` in the queue on, a contact may go to agents meeting ``skills`` (a wider requirement)."""

    after: timedelta
    skills: dict[str, int]


@dataclass(frozen=True, slots=True)
class Queue:
    """Where contacts wait, and who may serve them."""

    id: str
    name: str
    channels: frozenset[Channel]
    skills: dict[str, int]
    priority: int
    offer_timeout: timedelta
    offer_timeouts: Mapping[Channel, timedelta] = field(default_factory=dict)  # per channel, else ``offer_timeout``
    aging_per_minute: float = 0.0
    bullseye: tuple[BullseyeStep, ...] = ()
    overflow_to: str | None = None
    overflow_after: timedelta | None = None
    overflow_when_waiting_over: int | None = None
    hours: Calendar | None = None
    after_hours: AfterHours = "hold"
    close_message: str | None = None
    policy: RoutingPolicy = RoutingPolicy.LONGEST_IDLE
    auto_accept: bool = False
    group: str | None = None  # only members of this agent group serve the queue (escalation targets)
    service_level_seconds: float | None = None  # answer within this: the default threshold of queue stats
    # an agent who declined a contact or let its offer expire is its last choice: not offered it again before this
    # has passed, and after that only when no agent who has not turned it down can take it
    reoffer_after: timedelta = timedelta(seconds=15)

    def timeout_for(self, channel: Channel) -> timedelta:
        return self.offer_timeouts.get(channel, self.offer_timeout)

    def step_after(self, waited: timedelta) -> int:
        """How many bullseye steps have widened the pool for a contact that waited ``waited`` in this queue."""
        step = 0
        for bullseye in self.bullseye:
            if waited < bullseye.after:
                break
            step += 1
        return step

    def requirements(self) -> list[dict[str, int]]:
        """The skills required at step 0, 1, … (each bullseye step's requirement)."""
        return [self.skills, *(step.skills for step in self.bullseye)]

    def effective_priority(self, contact: "ContactRef", now: datetime) -> float:
        """Base priority plus aging for every minute waited."""
        if not self.aging_per_minute:
            return contact.priority
        return contact.priority + self.aging_per_minute * (now - contact.enqueued_at).total_seconds() / 60


@dataclass(slots=True)
class Agent:
    """A person who serves contacts, with what they can do and what they are doing."""

    id: str
    name: str
    groups: tuple[str, ...]
    skills: dict[str, int]
    capacity: dict[Channel, int]
    presence: Presence
    idle_since: datetime
    load: Counter[Channel] = field(default_factory=Counter)
    phone_exclusive: bool = False  # a call excludes all other work, and other work excludes calls
    wrap_up: timedelta = timedelta(0)  # after-contact work before the next offer
    max_missed: int | None = None  # set away after this many offers let expire in a row
    missed: int = 0
    busy_until: datetime | None = None  # end of wrap-up
    last_offered_at: datetime | None = None  # round-robin order

    def blocked(self, channel: Channel, used: Mapping[Channel, int]) -> bool:
        """Whether phone exclusivity forbids work on ``channel`` given the work in ``used``."""
        if not self.phone_exclusive:
            return False
        if channel is PHONE:
            return any(n > 0 for ch, n in used.items() if ch is not PHONE)
        return used.get(PHONE, 0) > 0

    def rank(self, queue: Queue, proficiency: int, used: Mapping[Channel, int] | None = None) -> tuple[Any, Any]:
        """The agent's place among those who may take a contact of ``queue`` (smaller first), by its policy."""
        policy = queue.policy
        if policy is LONGEST_IDLE:
            return self.idle_since, -proficiency
        if policy is MOST_PROFICIENT:
            return -proficiency, self.idle_since
        if policy is LEAST_OCCUPIED:
            load = self.load if used is None else used
            slots = sum(self.capacity.values()) or 1
            return sum(load.values()) / slots, self.idle_since
        return self.last_offered_at or EPOCH, self.idle_since

    def proficiency(self, required: dict[str, int]) -> int | None:
        """Sum of the agent's levels in ``required``, or None if any falls short."""
        total = 0
        for skill, minimum in required.items():
            level = self.skills.get(skill, 0)
            if level < minimum:
                return None
            total += level
        return total


@dataclass(frozen=True, slots=True)
class ContactRef:
    """What routing needs to know of a contact."""

    id: UUID
    conversation_key: str
    channel: Channel
    queue_id: str
    priority: int
    enqueued_at: datetime
    # sticky routing: wait for this agent (the customer's last agent, or its key account's TAM) until ``prefer_until``
    preferred_agent: str | None = None
    prefer_until: datetime | None = None
    # who the customer is, for escalation and reporting (carried on every routing event of the contact)
    customer_id: UUID | None = None
    tier: str | None = None
    owning_tam: str | None = None
    category: str | None = None
    queued_at: datetime | None = None  # when it entered its current queue, if moved since it was enqueued

    @property
    def entered(self) -> datetime:
        """When the contact entered its current queue: bullseye and overflow count from here."""
        return self.queued_at or self.enqueued_at


@dataclass(slots=True)
class WaitingContact:
    """A contact in a queue: free, or reserved by one pending offer.

    ``declined_by``: the agents who turned it down in this queue (declined, let the offer expire, transferred it
    here), and when they last did: each is its last choice, and not offered it again before the queue's
    ``reoffer_after`` has passed since.
    """

    ref: ContactRef
    offer_id: UUID | None = None
    offers_made: int = 0
    declined_by: dict[str, datetime] = field(default_factory=dict)

    def turned_down(self, agent_id: str, now: datetime, reoffer_after: timedelta) -> bool:
        """Whether ``agent_id`` turned the contact down too recently to be offered it at ``now``."""
        at = self.declined_by.get(agent_id)
        return at is not None and now < at + reoffer_after


@dataclass(frozen=True, slots=True)
class Offer:
    """A contact reserved for one agent until ``expires_at``."""

    id: UUID
    contact: ContactRef
    agent_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Assignment:
    """A contact an agent is working on."""

    id: UUID
    contact: ContactRef
    agent_id: str
    offers_made: int = 1  # offers of the contact so far: a transfer's next offer gets a fresh id
