"""Commands that cannot act on stale facts (issue 9, item 4), on a real PostgreSQL and Tansu broker.

The race: the escalation service decides an SLA breach from facts a moment old, and the router receives the
``escalate`` command after an agent accepted the contact. The router half plays the escalation service's stale
command; the escalation half plays the router's refusal. Each side is the real service; the other side's messages
are what it would publish, so the race is reproduced every time, without waiting on timing.
"""

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contracts import ROUTING_COMMANDS, ROUTING_EVENTS, RoutingCommand, RoutingEvent, RoutingEventType
from contracts.routing import CommandPrecondition, ContactState, RoutingCommandType
from services.escalation.config import EscalationSettings
from tests.integration.support import (
    commands,
    contact_event,
    eventually,
    publish,
    publish_contacts,
    read_topic,
    router_settings,
)
from tests.integration.support import serving as serving_app
from tests.integration.test_escalation_flow import SUPERVISOR, Service, receiver, routed, started
from tests.integration.test_escalation_notifier import SECRET, Receiver
from tests.integration.test_router_moves import ALICE, _assigned_to_alice, moves_config
from tools.assemble import router_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

__all__ = ["moves_config", "receiver"]  # fixtures used by the tests below

WAITING_IN_PRESALES = CommandPrecondition(state=ContactState.WAITING, queue_id="presales")


def escalate(contact_id: uuid.UUID, precondition: CommandPrecondition | None) -> RoutingCommand:
    return RoutingCommand(
        command_id=uuid.uuid4(),
        type=RoutingCommandType.ESCALATE,
        issued_at=datetime.now(UTC),
        contact_id=contact_id,
        target_group="engineers",
        priority=90,
        reason="sla.first_response.breach: first_response breach",
        precondition=precondition,
    )


async def send(broker: EmbeddedKafka, command: RoutingCommand) -> None:
    message = (command.model_dump_json().encode(), str(command.contact_id).encode())
    await publish(broker.bootstrap, ROUTING_COMMANDS, message)


async def routing_events(broker: EmbeddedKafka, contact_id: uuid.UUID) -> list[RoutingEvent]:
    records = await read_topic(broker.bootstrap, ROUTING_EVENTS, timeout=2)
    events = [RoutingEvent.model_validate_json(r.value) for r in records]
    return [e for e in events if e.contact_id == contact_id]


async def test_a_stale_escalation_leaves_the_accepted_contact_with_its_agent_and_a_genuine_one_moves(
    database_url: str, broker: EmbeddedKafka, moves_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.router")
    app = create_app(router_settings(database_url, broker, moves_config))
    async with serving_app(app) as client:
        service = app.state.router.service
        refused_before, moved_before = commands("refused"), commands("moved")
        # a genuine breach: the contact still waits (offered, not accepted) when the command arrives
        waiting = contact_event("stale-waiting", text="安装后无法开机")
        await publish_contacts(broker.bootstrap, waiting)
        await eventually(lambda: _async(waiting.event_id in service.state.waiting))
        await send(broker, escalate(waiting.event_id, WAITING_IN_PRESALES))

        async def moved() -> bool:
            found = service.state.waiting.get(waiting.event_id)
            return found is not None and found.ref.queue_id == "technical"

        await eventually(moved)

        # the race: alice accepted before the command, computed while the contact waited, arrived
        assignment = await _assigned_to_alice(client, broker, "stale-accepted")
        contact_id, assignment_id = uuid.UUID(assignment["contact_id"]), uuid.UUID(assignment["assignment_id"])
        stale = escalate(contact_id, WAITING_IN_PRESALES)
        await send(broker, stale)

        async def refusal() -> list[RoutingEvent]:
            return [e for e in await routing_events(broker, contact_id) if e.type is RoutingEventType.COMMAND_REFUSED]

        (refused,) = await eventually(refusal)
        assert (refused.command_id, refused.agent_id, refused.assignment_id) == (
            stale.command_id,
            "alice",
            assignment_id,
        )
        assert refused.reason is not None and "waiting in presales" in refused.reason and "alice" in refused.reason
        assert service.state.assignments[assignment_id].agent_id == "alice"  # the accepted contact stays
        assert contact_id not in service.state.waiting
        logged = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert any(str(stale.command_id) in line for line in logged)
        assert commands("refused") == refused_before + 1

        # redelivered, it is refused once; a command that saw alice's assignment is genuine and moves the contact
        await send(broker, stale)
        seen = CommandPrecondition(state=ContactState.ASSIGNED, queue_id="presales", assignment_id=assignment_id)
        await send(broker, escalate(contact_id, seen))

        async def escalated() -> bool:
            found = service.state.waiting.get(contact_id)
            return found is not None and found.ref.queue_id == "technical"

        await eventually(escalated)
        assert assignment_id not in service.state.assignments
        assert len(await refusal()) == 1
        # a supervisor's command (no precondition) is applied wherever the contact is, as before
        await send(broker, escalate(contact_id, None))
        await eventually(lambda: _async(commands("moved") == moved_before + 3))

        # completed before the command arrived: refused too, so its sender does not take it for done
        done = await _assigned_to_alice(client, broker, "stale-completed")
        completed = await client.post(f"/v1/assignments/{done['assignment_id']}/complete", headers=ALICE)
        assert completed.status_code == 200, completed.text
        late = escalate(uuid.UUID(done["contact_id"]), WAITING_IN_PRESALES)
        await send(broker, late)

        async def closed_refusal() -> list[RoutingEvent]:
            events = await routing_events(broker, late.contact_id)
            return [e for e in events if e.type is RoutingEventType.COMMAND_REFUSED]

        (refused_closed,) = await eventually(closed_refusal)
        assert refused_closed.command_id == late.command_id and refused_closed.queue_id == "presales"
        assert refused_closed.reason is not None and "not open (closed" in refused_closed.reason


async def _async(value: bool) -> bool:
    return value


# ---- the escalation service's half: the refusal makes it look again, on the newer facts ----
# targets name the test configuration's groups and queues: SLA breaches in returns go to presales, crises in
# presales to returns

POLICY = """
escalation:
  targets:
    supervisors: {{group: tier1, queue: presales, priority: 60}}
    crisis:
      group: engineers
      queue: returns
      priority: 100
      notify: [{{name: crisis-room, url: "{url}", secret: KEFU_TEST_WEBHOOK}}]
  triggers:
    sla:
      target: supervisors
      warn_at_percent: 50
      clocks:
        - {{queue: returns, first_response_seconds: 0.4}}
    crisis:
      target: crisis
      lexicon:
        media: {{terms: [曝光, 记者]}}
        safety: {{terms: [fire]}}  # what `Service.settle` sends
"""


@pytest.fixture
async def escalation(
    tmp_path: Path,
    database_url: str,
    broker: EmbeddedKafka,
    config_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Service]:
    monkeypatch.setenv("KEFU_TEST_WEBHOOK", SECRET)
    policy = tmp_path / "escalation.yaml"
    policy.write_text(POLICY.format(url=receiver.url), encoding="utf-8")
    settings = EscalationSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        config_path=config_path,
        policy_path=policy,
        consumer_group="esc-stale",
    )
    async with started(settings, broker, receiver) as running:
        yield running


def refusal_of(command: RoutingCommand, queue: str, *, agent: str, assignment: uuid.UUID) -> RoutingEvent:
    """The router's ``command_refused`` for ``command``: the contact is assigned to ``agent`` in ``queue``."""
    reason = f"expected waiting in {queue}; the contact is assigned to {agent} (assignment {assignment})"
    return routed(
        RoutingEventType.COMMAND_REFUSED,
        command.contact_id,
        queue=queue,
        agent_id=agent,
        assignment_id=assignment,
        command_id=command.command_id,
        reason=reason,
    )


def accepted(contact_id: uuid.UUID, queue: str, assignment: uuid.UUID) -> Sequence[RoutingEvent]:
    return (
        routed(RoutingEventType.ACCEPTED, contact_id, queue=queue, agent_id="alice"),
        routed(RoutingEventType.ASSIGNED, contact_id, queue=queue, agent_id="alice", assignment_id=assignment),
    )


async def test_a_refused_breach_command_cancels_its_case_and_the_answered_contact_is_not_escalated_again(
    escalation: Service,
) -> None:
    contact_id, assignment = uuid.uuid4(), uuid.uuid4()
    await escalation.routing(routed(RoutingEventType.QUEUED, contact_id, queue="returns"))
    case = await escalation.case_for(contact_id, "sla.first_response.breach")
    (command,) = await escalation.commands(contact_id)
    assert command.precondition == CommandPrecondition(state=ContactState.WAITING, queue_id="returns")

    # alice accepted 0.27 s before the command reached the router, which refused it
    for event in accepted(contact_id, "returns", assignment):
        await escalation.routing(event)
    await escalation.routing(refusal_of(command, "returns", agent="alice", assignment=assignment))

    async def cancelled() -> dict[str, Any] | None:
        found = await escalation.case_for(contact_id, "sla.first_response.breach")
        return found if found["status"] == "cancelled" else None

    await eventually(cancelled)
    detail = (await escalation.client.get(f"/v1/escalations/{case['case_id']}", headers=SUPERVISOR)).json()
    assert detail["audit"][-1]["actor"] == "router" and "assigned to alice" in detail["audit"][-1]["detail"]
    # decided again past the breach, on facts that include alice's answer: the clock stopped, nothing fires again
    await escalation.settle()
    assert len(await escalation.commands(contact_id)) == 1
    assert (await escalation.case_for(contact_id, "sla.first_response.breach"))["status"] == "cancelled"


async def test_a_refused_crisis_command_is_decided_again_on_the_newer_facts_and_still_escalates(
    escalation: Service,
) -> None:
    message = contact_event("stale-crisis", text="再不处理我就找记者曝光")
    contact_id, assignment = message.event_id, uuid.uuid4()
    await escalation.contact(message)
    await escalation.routing(
        routed(RoutingEventType.QUEUED, contact_id, queue="presales", conversation_key=message.conversation_key)
    )
    case = await escalation.case_for(contact_id, "crisis")
    first = (await escalation.commands(contact_id))[0]
    assert first.precondition is not None and first.precondition.state is ContactState.WAITING

    for event in accepted(contact_id, "presales", assignment):
        await escalation.routing(event)
    await escalation.routing(refusal_of(first, "presales", agent="alice", assignment=assignment))

    # still a crisis on the newer facts: the case opens again, and the command says what it saw now
    commands = await escalation.commands(contact_id, at_least=2)
    assert commands[1].precondition == CommandPrecondition(
        state=ContactState.ASSIGNED, queue_id="presales", assignment_id=assignment
    )
    assert (commands[1].target_group, commands[1].priority) == ("engineers", 100)
    again = await escalation.case_for(contact_id, "crisis")
    assert (again["case_id"], again["status"]) == (case["case_id"], "open")
    detail = (await escalation.client.get(f"/v1/escalations/{case['case_id']}", headers=SUPERVISOR)).json()
    assert [a["action"] for a in detail["audit"]] == ["open", "cancel", "open"]
