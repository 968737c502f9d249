"""Commands carry their preconditions: what the escalation service assumes, and the router's check of it."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from contracts import Channel
from contracts.routing import CommandPrecondition, ContactState
from services.escalation.domain.triggers import ContactFacts, assumed
from services.router.domain.model import Assignment, ContactRef, Queue, RoutingState, WaitingContact
from services.router.domain.preconditions import refusal

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
WAITING = CommandPrecondition(state=ContactState.WAITING, queue_id="presales")


def _state() -> tuple[RoutingState, ContactRef, ContactRef, Assignment]:
    queues = {
        q: Queue(q, q, frozenset(Channel), {}, 10, timedelta(seconds=30)) for q in ("presales", "returns", "crisis")
    }
    state = RoutingState(queues=queues)
    waiting = ContactRef(uuid.uuid4(), "webchat:shop:w", Channel.WEBCHAT, "presales", 10, T0)
    assigned = ContactRef(uuid.uuid4(), "webchat:shop:a", Channel.WEBCHAT, "presales", 10, T0)
    assignment = Assignment(uuid.uuid4(), assigned, "alice")
    state.waiting[waiting.id] = WaitingContact(waiting)
    state.assignments[assignment.id] = assignment
    return state, waiting, assigned, assignment


def unmet(state: RoutingState, contact_id: uuid.UUID, precondition: CommandPrecondition | None) -> str | None:
    refused = refusal(state, contact_id, precondition)
    return None if refused is None else refused.reason


def test_a_command_without_a_precondition_is_applied_wherever_the_contact_is() -> None:
    state, waiting, assigned, _ = _state()
    assert unmet(state, waiting.id, None) is None
    assert unmet(state, assigned.id, None) is None


def test_waiting_in_a_queue_holds_while_it_waits_there_offered_or_not() -> None:
    state, waiting, _, _ = _state()
    assert unmet(state, waiting.id, WAITING) is None
    state.waiting[waiting.id].offer_id = uuid.uuid4()  # an offer is a reservation: the contact still waits
    assert unmet(state, waiting.id, WAITING) is None
    assert unmet(state, waiting.id, CommandPrecondition(state=ContactState.WAITING)) is None  # any queue


def test_waiting_is_refused_once_an_agent_accepted_and_says_who() -> None:
    state, _, assigned, assignment = _state()
    refused = refusal(state, assigned.id, WAITING)
    assert refused is not None and (refused.contact, refused.assignment) == (assigned, assignment)
    reason = refused.reason
    assert "waiting in presales" in reason and "assigned to alice" in reason and str(assignment.id) in reason


def test_waiting_in_another_queue_is_refused() -> None:
    state, waiting, _, _ = _state()
    reason = unmet(state, waiting.id, CommandPrecondition(state=ContactState.WAITING, queue_id="returns"))
    assert reason is not None and "waiting in presales" in reason


def test_assigned_holds_for_that_assignment_only() -> None:
    state, waiting, assigned, assignment = _state()
    exact = CommandPrecondition(state=ContactState.ASSIGNED, queue_id="presales", assignment_id=assignment.id)
    assert unmet(state, assigned.id, exact) is None
    assert unmet(state, assigned.id, CommandPrecondition(state=ContactState.ASSIGNED)) is None
    other = CommandPrecondition(state=ContactState.ASSIGNED, assignment_id=uuid.uuid4())
    assert unmet(state, assigned.id, other) is not None  # transferred and taken by someone else meanwhile
    back_in_queue = unmet(state, waiting.id, exact)
    assert back_in_queue is not None and "waiting in presales" in back_in_queue


def test_a_contact_the_router_no_longer_holds_fails_any_precondition() -> None:
    state, _, _, _ = _state()
    reason = unmet(state, uuid.uuid4(), WAITING)
    assert reason is not None and "not open" in reason


def test_an_assignment_id_needs_the_assigned_state() -> None:
    with pytest.raises(ValidationError):
        CommandPrecondition(state=ContactState.WAITING, assignment_id=uuid.uuid4())


def _facts(status: str, queue: str = "presales") -> ContactFacts:
    return ContactFacts(uuid.uuid4(), queue=queue, tier="standard", queued_at=T0, status=status)


def test_the_escalation_service_says_what_it_saw() -> None:
    assert assumed(_facts("waiting"), None) == WAITING
    # a message seen before the router queued the contact: waiting, in whatever queue the router chose
    assert assumed(_facts("waiting", queue=""), None) == CommandPrecondition(state=ContactState.WAITING)
    assignment = uuid.uuid4()
    assert assumed(_facts("assigned"), assignment) == CommandPrecondition(
        state=ContactState.ASSIGNED, queue_id="presales", assignment_id=assignment
    )
    for closed in ("resolved", "closed", "abandoned"):
        assert assumed(_facts(closed), None) is None
