"""The router's in-memory picture: ``RoutingState``, the entities it holds (``entities``) and its indexes (``index``).

The service, its adapters and the tests import the picture from here, entities included; inside the domain, the
modules below ``RoutingState`` import ``entities`` directly.
"""

from dataclasses import dataclass, field
from uuid import UUID

from services.router.domain.entities import (
    EPOCH,
    AfterHours,
    Agent,
    Assignment,
    BullseyeStep,
    Calendar,
    ContactRef,
    Offer,
    Presence,
    Queue,
    RoutingPolicy,
    WaitingContact,
)
from services.router.domain.index import RoutingIndex

__all__ = [
    "EPOCH",
    "AfterHours",
    "Agent",
    "Assignment",
    "BullseyeStep",
    "Calendar",
    "ContactRef",
    "Offer",
    "Presence",
    "Queue",
    "RoutingPolicy",
    "RoutingState",
    "WaitingContact",
]


@dataclass(slots=True)
class RoutingState:
    """Everything the decision core reads."""

    queues: dict[str, Queue]
    agents: dict[str, Agent] = field(default_factory=dict)
    waiting: dict[UUID, WaitingContact] = field(default_factory=dict)
    offers: dict[UUID, Offer] = field(default_factory=dict)
    assignments: dict[UUID, Assignment] = field(default_factory=dict)
    hours_open: dict[str, bool] = field(default_factory=dict)  # queues with hours: open at the last tick
    # derived from the fields above, so it is neither shown nor compared
    _index: RoutingIndex | None = field(default=None, repr=False, compare=False)

    def index(self) -> RoutingIndex:
        """The indexes over this state, (re)built when missing or when the state changed behind ``apply``."""
        index = self._index
        if index is None or not index.is_current():
            index = self._index = RoutingIndex(self)
        return index

    def reindex(self) -> None:
        """Drop the indexes: call after changing agents' skills, capacity or presence other than through ``apply``."""
        self._index = None
