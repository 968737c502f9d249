"""Whether a routing command's precondition still holds: pure, checked against the in-memory routing state.

A command computed from another service's view (an escalation) names the state it assumed; the router applies it
only while that state holds, and otherwise refuses it with the reason this module gives.
"""

from dataclasses import dataclass
from uuid import UUID

from contracts.routing import CommandPrecondition, ContactState
from services.router.domain.model import Assignment, ContactRef, RoutingState


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a command is refused, and where the contact is instead (nowhere: it is not open)."""

    reason: str
    contact: ContactRef | None = None
    assignment: Assignment | None = None


def refusal(state: RoutingState, contact_id: UUID, precondition: CommandPrecondition | None) -> Refusal | None:
    """Why ``precondition`` no longer holds for the contact; None while it holds.

    No precondition always holds: a supervisor's command, or one from a producer that sends none.
    """
    if precondition is None:
        return None
    expected = _expected(precondition)
    waiting = state.waiting.get(contact_id)
    if waiting is not None:
        queue = waiting.ref.queue_id
        if precondition.state is ContactState.WAITING and precondition.queue_id in (None, queue):
            return None
        return Refusal(f"expected {expected}; the contact is waiting in {queue}", waiting.ref)
    assignment = next((a for a in state.assignments.values() if a.contact.id == contact_id), None)
    if assignment is None:
        return Refusal(f"expected {expected}; the contact is not open (closed, or not received by the router yet)")
    queue = assignment.contact.queue_id
    if (
        precondition.state is ContactState.ASSIGNED
        and precondition.queue_id in (None, queue)
        and precondition.assignment_id in (None, assignment.id)
    ):
        return None
    where = f"assigned to {assignment.agent_id} in {queue} (assignment {assignment.id})"
    return Refusal(f"expected {expected}; the contact is {where}", assignment.contact, assignment)


def _expected(precondition: CommandPrecondition) -> str:
    where = f" in {precondition.queue_id}" if precondition.queue_id is not None else ""
    on = f" (assignment {precondition.assignment_id})" if precondition.assignment_id is not None else ""
    return f"{precondition.state.value}{where}{on}"
