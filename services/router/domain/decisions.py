"""What the router may be told (events) and what it decides (decisions)."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from services.router.domain.model import ContactRef, Presence

# ---- events: what happened, as input to ``decide`` ----


@dataclass(frozen=True, slots=True)
class ContactArrived:
    contact: ContactRef


@dataclass(frozen=True, slots=True)
class PresenceRequested:
    agent_id: str
    presence: Presence


@dataclass(frozen=True, slots=True)
class OfferAccepted:
    offer_id: UUID
    agent_id: str


@dataclass(frozen=True, slots=True)
class OfferDeclined:
    offer_id: UUID
    agent_id: str


@dataclass(frozen=True, slots=True)
class ClockTicked:
    """Time passed: offers past their deadline expire."""


@dataclass(frozen=True, slots=True)
class AssignmentCompleted:
    assignment_id: UUID
    agent_id: str


@dataclass(frozen=True, slots=True)
class ContactAbandoned:
    """The customer left (a caller hung up) before being served."""

    contact_id: UUID


Event = (
    ContactArrived
    | PresenceRequested
    | OfferAccepted
    | OfferDeclined
    | ClockTicked
    | AssignmentCompleted
    | ContactAbandoned
)

# ---- decisions: what the router does, to persist, publish and apply ----


class OfferOutcome(StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Enqueued:
    contact: ContactRef


@dataclass(frozen=True, slots=True)
class Offered:
    offer_id: UUID
    contact: ContactRef
    agent_id: str
    at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OfferClosed:
    offer_id: UUID
    contact: ContactRef
    agent_id: str
    outcome: OfferOutcome
    at: datetime


@dataclass(frozen=True, slots=True)
class Assigned:
    assignment_id: UUID
    offer_id: UUID
    contact: ContactRef
    agent_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PresenceSet:
    agent_id: str
    presence: Presence
    at: datetime


@dataclass(frozen=True, slots=True)
class Completed:
    assignment_id: UUID
    contact: ContactRef
    agent_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Abandoned:
    contact: ContactRef
    at: datetime


Decision = Enqueued | Offered | OfferClosed | Assigned | PresenceSet | Completed | Abandoned
