"""Random routing histories for the decision-core property tests: the events that act on what exists."""

from services.router.domain.decisions import (
    AssignmentCompleted,
    ClockTicked,
    ContactAbandoned,
    Event,
    OfferAccepted,
    OfferDeclined,
)
from services.router.domain.model import RoutingState


def event_on_existing(state: RoutingState, kind: str, n: int) -> Event | None:
    """The ``kind`` event on the ``n``-th existing offer, assignment or waiting contact; None if there is none."""
    offers = sorted(state.offers.values(), key=lambda o: o.id)
    assignments = sorted(state.assignments.values(), key=lambda a: a.id)
    match kind:
        case "accept" if offers:
            offer = offers[n % len(offers)]
            return OfferAccepted(offer.id, offer.agent_id)
        case "decline" if offers:
            offer = offers[n % len(offers)]
            return OfferDeclined(offer.id, offer.agent_id)
        case "tick":
            return ClockTicked()
        case "abandon" if state.waiting:
            return ContactAbandoned(sorted(state.waiting)[n % len(state.waiting)])
        case "complete" if assignments:
            assignment = assignments[n % len(assignments)]
            return AssignmentCompleted(assignment.id, assignment.agent_id)
    return None
