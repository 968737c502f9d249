"""The router's in-memory picture of queues, agents, waiting contacts, offers and assignments.

Plain data: the decision core (``decide``) reads it, ``apply`` changes it, and the repository
rebuilds it from PostgreSQL on start. ``RoutingState.index()`` adds the ordered indexes that make
each decision O(log n) instead of a scan of every agent or waiting contact (see ``RoutingIndex``).
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from services.router.domain.index import RoutingIndex

from contracts import Channel


class Presence(StrEnum):
    """Whether an agent takes work."""

    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Queue:
    """Where contacts wait, and who may serve them."""

    id: str
    name: str
    channels: frozenset[Channel]
    skills: dict[str, int]
    priority: int
    offer_timeout: timedelta


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


@dataclass(slots=True)
class WaitingContact:
    """A contact in a queue: free, or reserved by one pending offer."""

    ref: ContactRef
    offer_id: UUID | None = None
    offers_made: int = 0
    declined_by: set[str] = field(default_factory=set)


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


@dataclass(slots=True)
class RoutingState:
    """Everything the decision core reads."""

    queues: dict[str, Queue]
    agents: dict[str, Agent] = field(default_factory=dict)
    waiting: dict[UUID, WaitingContact] = field(default_factory=dict)
    offers: dict[UUID, Offer] = field(default_factory=dict)
    assignments: dict[UUID, Assignment] = field(default_factory=dict)
    # derived from the fields above, so it is neither shown nor compared
    _index: "RoutingIndex | None" = field(default=None, repr=False, compare=False)

    def index(self) -> "RoutingIndex":
        """The indexes over this state, (re)built when missing or when the state changed behind ``apply``."""
        index = self._index
        if index is None or index.fingerprint != self._fingerprint():
            from services.router.domain.index import RoutingIndex  # the index module builds on this one

            index = self._index = RoutingIndex(self)
        return index

    def reindex(self) -> None:
        """Drop the indexes: call after changing agents' skills, capacity or presence other than through ``apply``."""
        self._index = None

    def _fingerprint(self) -> tuple[int, int, int, int, int]:
        # cheap evidence that someone added or removed entries without ``apply`` (e.g. a rebuild)
        return id(self.queues), len(self.queues), len(self.agents), len(self.waiting), len(self.offers)
