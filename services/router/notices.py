"""What the router tells agents' desktops: its decisions and customers' messages, as feed notices.

Built from the decisions themselves (not from the state after applying them), so they are written to the feed in
the transaction that persists the decisions.
"""

from collections.abc import Iterable
from uuid import UUID

from contracts import ContactEvent
from services.router.adapters.feed import Notice
from services.router.domain.decisions import Assigned, Completed, Decision, OfferClosed, Offered, PresenceSet
from services.router.domain.model import Assignment, Offer, RoutingState
from services.router.views import assignment_view, offer_view


def of_decisions(decisions: Iterable[Decision]) -> list[Notice]:
    """Offers made and closed, assignments opened and closed, and presence the router set (wrap-up and its end,
    away after missed offers, a shift), for the agents concerned."""
    notices = []
    for decision in decisions:
        match decision:
            case Offered(offer_id=offer_id, contact=contact, agent_id=agent_id, expires_at=expires_at):
                view = offer_view(Offer(offer_id, contact, agent_id, expires_at))
                notices.append(Notice(agent_id, "offer.created", view))
            case OfferClosed(offer_id=offer_id, agent_id=agent_id, outcome=outcome):
                notices.append(Notice(agent_id, "offer.closed", {"offer_id": str(offer_id), "outcome": outcome.value}))
            case Assigned(assignment_id=assignment_id, contact=contact, agent_id=agent_id):
                view = assignment_view(Assignment(assignment_id, contact, agent_id))
                notices.append(Notice(agent_id, "assignment.created", view))
            case Completed(assignment_id=assignment_id, agent_id=agent_id):
                notices.append(Notice(agent_id, "assignment.closed", {"assignment_id": str(assignment_id)}))
            case PresenceSet(agent_id=agent_id, presence=presence, until=until, reason=reason):
                change = {"presence": presence.value, "until": until.isoformat() if until else None, "reason": reason}
                notices.append(Notice(agent_id, "presence.changed", change))
    return notices


def of_message(state: RoutingState, contact_id: UUID, event: ContactEvent) -> list[Notice]:
    """A customer's new message, for the agent working on its contact."""
    return [
        Notice(
            assignment.agent_id,
            "assignment.message",
            {
                "assignment_id": str(assignment.id),
                "contact_id": str(contact_id),
                "text": event.message.text,
                "occurred_at": event.occurred_at.isoformat(),
            },
        )
        for assignment in state.assignments.values()
        if assignment.contact.id == contact_id
    ]
