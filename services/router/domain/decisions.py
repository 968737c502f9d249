"""What the router may be told (events) and what it decides (decisions)."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from hashlib import sha1
from uuid import UUID, SafeUUID

from services.router.domain.entities import ContactRef, Presence

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
    disposition: str | None = None
    resolved: bool | None = None


@dataclass(frozen=True, slots=True)
class ContactAbandoned:
    """The customer left (a caller hung up) before being served."""

    contact_id: UUID


@dataclass(frozen=True, slots=True)
class ContactMoved:
    """Move a waiting or assigned contact to ``queue_id`` (a transfer, an escalation, a supervisor's move).

    ``agent_id`` is who asks when an agent transfers its own assignment (None: a supervisor or the system);
    ``preferred_agent`` makes the contact wait for one agent until ``prefer_until`` (a transfer to an agent).
    """

    contact_id: UUID
    queue_id: str
    reason: str
    priority: int | None = None
    agent_id: str | None = None
    preferred_agent: str | None = None
    prefer_until: datetime | None = None


Event = (
    ContactArrived
    | PresenceRequested
    | OfferAccepted
    | OfferDeclined
    | ClockTicked
    | AssignmentCompleted
    | ContactAbandoned
    | ContactMoved
)

# ---- decisions: what the router does, to persist, publish and apply ----


class OfferOutcome(StrEnum):
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    REVOKED = "revoked"


# read once, as module constants (see ``entities.AVAILABLE``)
ACCEPTED, DECLINED = OfferOutcome.ACCEPTED, OfferOutcome.DECLINED
EXPIRED, REVOKED = OfferOutcome.EXPIRED, OfferOutcome.REVOKED


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
    until: datetime | None = None  # the end of wrap-up
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    assignment_id: UUID
    contact: ContactRef
    agent_id: str
    at: datetime
    disposition: str | None = None
    resolved: bool | None = None
    transferred: bool = False  # closed because the contact moves on (a transfer or an escalation)


@dataclass(frozen=True, slots=True)
class Abandoned:
    contact: ContactRef
    at: datetime


@dataclass(frozen=True, slots=True)
class Requeued:
    """The contact moved from ``old``'s queue (or an assignment) to ``new``'s."""

    old: ContactRef
    new: ContactRef
    reason: str
    at: datetime
    offers_made: int = 0  # offers of the contact so far, so the next offer gets a fresh id
    exclude: frozenset[str] = frozenset()  # agents not to offer it to (who transferred it)


@dataclass(frozen=True, slots=True)
class Closed:
    """The contact was closed without service (after hours, with a message for the customer)."""

    contact: ContactRef
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class HoursChanged:
    """A queue with business hours opened or closed."""

    queue_id: str
    open: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class TimersFired:
    """Contacts' timers due by ``at`` were acted on (a bullseye step widened, a preference ended…)."""

    at: datetime


Decision = (
    Enqueued
    | Offered
    | OfferClosed
    | Assigned
    | PresenceSet
    | Completed
    | Abandoned
    | Requeued
    | Closed
    | HoursChanged
    | TimersFired
)


def offer_id_for(contact_id: UUID, attempt: int) -> UUID:
    """The id of the ``attempt``-th offer of a contact: deterministic, so ``decide`` stays pure."""
    return _uuid5(contact_id, f"offer:{attempt}")


def assignment_id_for(offer_id: UUID) -> UUID:
    """The id of the assignment an accepted offer becomes."""
    return _uuid5(offer_id, "assignment")


# the variant (RFC 4122) and version (5) bits of a name-based SHA-1 UUID
_KEEP = ~((0xC000 << 48) | (0xF000 << 64))
_VARIANT_AND_VERSION = (0x8000 << 48) | (5 << 76)
_new, _set = object.__new__, object.__setattr__  # how UUID.__init__ sets the slots of an immutable UUID
_UNKNOWN = SafeUUID.unknown  # read once: ``SafeUUID.unknown`` is a Python-level descriptor call (enum.property)


def _uuid5(namespace: UUID, name: str) -> UUID:
    """``uuid.uuid5(namespace, name)``, the same id with fewer Python-level steps: most decisions make one.

    The bytes are read from ``int`` (``UUID.bytes`` is a Python property), and the UUID is made as ``UUID.__init__``
    ends, without its checks of arguments that are right by construction (128 bits, variant and version set).
    """
    digest = sha1(namespace.int.to_bytes(16) + name.encode(), usedforsecurity=False).digest()
    uid = _new(UUID)
    _set(uid, "int", int.from_bytes(digest[:16]) & _KEEP | _VARIANT_AND_VERSION)
    _set(uid, "is_safe", _UNKNOWN)
    return uid
