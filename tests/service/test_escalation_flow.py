"""Each trigger's decision through the escalation service's handlers, on a real PostgreSQL without Kafka: facts,
cases and timers in the database, routing commands and escalation events read from its outbox, time moved by hand.
(Over Kafka, with the timer runner and signed webhooks: ``tests/integration/test_escalation_flow.py``.)"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import (
    ESCALATIONS,
    ROUTING_COMMANDS,
    Channel,
    ContactEvent,
    EscalationEvent,
    RoutingCommand,
    RoutingEvent,
    RoutingEventType,
)
from services.escalation import queries
from services.escalation.adapters.orm import notifications, timers
from services.escalation.adapters.orm import outbox as escalation_outbox
from services.escalation.adapters.timers import PENDING as TIMER_PENDING
from services.escalation.config import EscalationSettings
from services.escalation.domain.cases import Action
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.service import EscalationService
from tests.integration.support import contact_event
from tests.integration.test_escalation_flow import POLICY
from tests.service.conftest import Clock, escalation_service, fire_due, outbox_rows
from tools.assemble import escalation_config

pytestmark = pytest.mark.service

HOOK_URL = "http://127.0.0.1:9/hooks"  # never called: the notifier does not run in this tier


@dataclass
class Service:
    """The escalation service's handlers, called as its consumers and timer runner call them."""

    service: EscalationService
    engine: AsyncEngine
    clock: Clock

    async def contact(self, event: ContactEvent) -> None:
        await self.service.contact_message(event)

    async def routing(self, event: RoutingEvent) -> None:
        await self.service.routing_step(event)

    async def later(self, seconds: float) -> None:
        """``seconds`` pass; the timers due by then fire."""
        self.clock.advance(seconds)
        await fire_due(self.engine, self.service.timer_due, self.clock)

    async def pending_timers(self, contact_id: uuid.UUID) -> list[str]:
        async with self.engine.connect() as conn:
            query = select(timers.c.kind).where(timers.c.contact_id == contact_id, TIMER_PENDING)
            return sorted((await conn.execute(query)).scalars())

    async def cases(self, contact_id: uuid.UUID) -> list[dict[str, Any]]:
        found = await queries.case_list(self.engine, status=None, contact_id=contact_id, target=None, limit=100)
        return [case.model_dump(mode="json") for case in found]

    async def case(self, case_id: uuid.UUID | str) -> dict[str, Any]:
        return (await queries.case(self.engine, uuid.UUID(str(case_id)))).model_dump(mode="json")

    async def case_for(self, contact_id: uuid.UUID, trigger: str) -> dict[str, Any]:
        return next(c for c in await self.cases(contact_id) if c["trigger"] == trigger)

    async def published(self, topic: str, model: type[BaseModel]) -> list[Any]:
        return [
            model.model_validate_json(r["payload"])
            for r in await outbox_rows(self.engine, escalation_outbox)
            if r["topic"] == topic
        ]

    async def commands(self, contact_id: uuid.UUID) -> list[RoutingCommand]:
        return [c for c in await self.published(ROUTING_COMMANDS, RoutingCommand) if c.contact_id == contact_id]

    async def notifications(self, contact_id: uuid.UUID) -> list[Any]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(notifications))).mappings().all()
        return [r for r in rows if str(contact_id) in str(dict(r))]

    def routed(
        self, kind: RoutingEventType, contact_id: uuid.UUID, *, queue: str = "presales", **fields: Any
    ) -> RoutingEvent:
        return RoutingEvent(
            event_id=uuid.uuid4(),
            type=kind,
            occurred_at=fields.pop("occurred_at", self.clock.now),
            contact_id=contact_id,
            conversation_key=fields.pop("conversation_key", f"webchat:shop:{contact_id}"),
            channel=fields.pop("channel", Channel.WEBCHAT),
            queue_id=queue,
            **fields,
        )

    async def act(self, case_id: uuid.UUID | str, action: Action) -> dict[str, Any]:
        def anyone(_: str | None) -> None:
            return None

        await self.service.act_on_case(uuid.UUID(str(case_id)), action, actor="supervisor", note="", check=anyone)
        return await self.case(case_id)


@pytest.fixture
def policy(escalation_settings: EscalationSettings) -> Path:
    escalation_settings.policy_path.write_text(POLICY.format(url=HOOK_URL, ack=1.0), encoding="utf-8")
    return escalation_settings.policy_path


@pytest.fixture
def service(escalation_settings: EscalationSettings, policy: Path, engine: AsyncEngine, clock: Clock) -> Service:
    return Service(escalation_service(escalation_settings, engine, clock), engine, clock)


async def test_a_crisis_word_moves_the_contact_to_the_crisis_group_at_highest_priority_once(
    service: Service,
) -> None:
    first = contact_event("crisis-1", text="冰箱坏了")
    crisis = contact_event("crisis-1", text="再不处理我就找记者曝光")
    queued = service.routed(RoutingEventType.QUEUED, first.event_id, conversation_key=first.conversation_key)
    for event in (first, crisis):
        await service.contact(event)
    await service.routing(queued)

    case = await service.case_for(first.event_id, "crisis")
    assert (case["target"], case["level"], case["priority"], case["status"]) == ("crisis", 1, 100, "open")
    assert "记者" in case["evidence"]["evidence"]
    (command,) = await service.commands(first.event_id)
    assert (command.type, command.target_group, command.target_queue_id, command.priority) == (
        "escalate",
        "crisis",
        "crisis",
        100,
    )
    # the webhook of the crisis group is to hear of it (its delivery, signed: the integration test)
    assert len(await service.notifications(first.event_id)) == 1

    # replayed events change nothing: the same messages and routing event again, then a harmless one
    for event in (first, crisis):
        await service.contact(event)
    await service.routing(queued)
    await service.contact(contact_event("crisis-1", text="没有起火，只是想问问进度"))
    assert [c["trigger"] for c in await service.cases(first.event_id)] == ["crisis"]
    assert len(await service.commands(first.event_id)) == 1
    assert len(await service.notifications(first.event_id)) == 1


async def test_sla_breach_fires_from_a_timer_after_a_warning(service: Service) -> None:
    contact_id = uuid.uuid4()
    await service.routing(service.routed(RoutingEventType.QUEUED, contact_id, queue="returns"))
    await service.later(2)
    case = await service.case_for(contact_id, "sla.first_response.breach")
    assert (case["target"], case["priority"], case["created_by"]) == ("supervisors", 60, "policy")
    (command,) = await service.commands(contact_id)
    assert (command.target_group, command.target_queue_id) == ("supervisors", "complaints")

    answered = uuid.uuid4()  # answered before the breach: the timers come due and find nothing to do
    await service.routing(service.routed(RoutingEventType.QUEUED, answered, queue="returns"))
    await service.routing(service.routed(RoutingEventType.ASSIGNED, answered, queue="returns", agent_id="alice"))
    await service.later(2.5)
    assert await service.cases(answered) == []


async def test_a_key_account_goes_to_its_tam_after_the_hold(service: Service) -> None:
    contact_id = uuid.uuid4()
    event = service.routed(RoutingEventType.QUEUED, contact_id, customer_tier="key_account", owning_tam="chen")
    await service.routing(event)
    await service.later(1.1)
    assert await service.cases(contact_id) == []  # still in its hold
    await service.later(0.1)
    case = await service.case_for(contact_id, "key_account")
    assert (case["target"], case["priority"]) == ("tam", 80)
    assert "owning TAM chen" in case["reason"]
    (command,) = await service.commands(contact_id)
    assert (command.target_group, command.target_queue_id, command.priority) == ("tam", "key-accounts", 80)
    assert command.target_agent_id == "chen"  # its own TAM first, the TAM group after
    held = datetime.fromisoformat(case["created_at"]) - event.occurred_at
    assert held.total_seconds() >= 1.2  # hold_minutes 0.02: tier 1 had its 1.2 s


@pytest.mark.parametrize("end", [RoutingEventType.COMPLETED, RoutingEventType.ABANDONED, RoutingEventType.CLOSED])
async def test_a_contact_that_ends_leaves_no_timer_pending(service: Service, end: RoutingEventType) -> None:
    """Nothing can fire for a contact that ended (completed, abandoned or closed): its wake-up calls are cancelled,
    not left to come due and find nothing to do."""
    contact_id = uuid.uuid4()
    held = service.routed(RoutingEventType.QUEUED, contact_id, queue="returns", customer_tier="key_account")
    await service.routing(held)
    assert await service.pending_timers(contact_id)  # the key-account hold, the SLA's warning and breach
    await service.routing(service.routed(end, contact_id, queue="returns", agent_id="alice"))
    assert await service.pending_timers(contact_id) == []
    assert await service.cases(contact_id) == []


async def test_a_technical_contact_transferred_twice_goes_to_engineers_and_climbs_when_unacknowledged(
    service: Service,
) -> None:
    contact_id = uuid.uuid4()
    await service.routing(service.routed(RoutingEventType.QUEUED, contact_id, category="technical"))
    for _ in range(2):
        await service.routing(service.routed(RoutingEventType.TRANSFERRED, contact_id, queue="returns"))
    case = await service.case_for(contact_id, "technical")
    assert (case["target"], case["level"]) == ("engineers", 1)

    await service.later(1)  # engineers had 1 s to acknowledge
    after = await service.case(case["case_id"])
    assert after["level"] == 2
    assert (after["target"], after["priority"], after["status"]) == ("supervisors", 60, "open")
    assert [a["action"] for a in after["audit"]] == ["open", "climb"]
    commands = await service.commands(contact_id)
    assert [(c.target_group, c.priority) for c in commands] == [("engineers", 70), ("supervisors", 60)]
    events = await service.published(ESCALATIONS, EscalationEvent)
    assert [(e.target, e.level) for e in events if e.contact_id == contact_id] == [("engineers", 1), ("supervisors", 2)]
    acked = await service.act(case["case_id"], Action.ACKNOWLEDGE)
    assert acked["status"] == "acknowledged"


async def test_an_acknowledged_case_does_not_climb(service: Service) -> None:
    contact_id = uuid.uuid4()
    case_id = await service.service.escalate_by_hand(
        contact_id=contact_id, target="engineers", reason="设备反复报错 E4", evidence={}, priority=None, actor="sv"
    )
    await service.act(case_id, Action.ACKNOWLEDGE)
    await service.later(1.5)
    found = await service.case(case_id)
    assert (found["level"], [a["action"] for a in found["audit"]]) == (1, ["open", "acknowledge"])


async def test_the_third_contact_of_a_customer_within_the_window_goes_to_supervisors(service: Service) -> None:
    customer = uuid.uuid4()
    contacts = [uuid.uuid4() for _ in range(3)]
    began = [service.clock.now - timedelta(minutes=minutes) for minutes in (30, 20, 10)]
    channels = (Channel.WEBCHAT, Channel.EMAIL, Channel.PHONE)
    # the latest contact's events come in first (partitions are independent): it is still the one escalated
    for i in (2, 0, 1):
        event = service.routed(
            RoutingEventType.QUEUED, contacts[i], customer_id=customer, channel=channels[i], occurred_at=began[i]
        )
        await service.routing(event)
    case = await service.case_for(contacts[2], "repeat_contact")
    assert case["target"] == "supervisors" and "3 contacts" in case["reason"]
    assert await service.cases(contacts[0]) == [] and await service.cases(contacts[1]) == []


async def test_a_fetchs_routing_events_keep_the_order_they_were_decided_in(service: Service) -> None:
    # the router decides queued and offered in one step, at one instant: the history keeps them in the topic's order
    contact_id = uuid.uuid4()
    steps = [RoutingEventType.QUEUED, RoutingEventType.OFFERED, RoutingEventType.ACCEPTED, RoutingEventType.ASSIGNED]
    fetch = [service.routed(kind, contact_id, agent_id="alice") for kind in steps]
    await service.service.routing_steps([*fetch, fetch[1]])  # a redelivery within the fetch changes nothing
    history = await queries.routing_history(service.engine, contact_id=contact_id, limit=100)
    assert [e.type for e in history] == steps


async def test_a_commit_tells_the_earliest_due_time_of_the_timers_it_created(
    escalation_settings: EscalationSettings, policy: Path, engine: AsyncEngine, clock: Clock
) -> None:
    """What wakes the timer runner (``bootstrap``: ``runner.wake(unit.due)``): the earliest pending timer a commit
    created, none when its timers existed already or it cancelled them."""
    committed: list[datetime | None] = []
    rules = escalation_config(escalation_settings, log_warnings=False).section("escalation", EscalationPolicy)
    service = EscalationService(engine, rules, clock=clock, after_commit=lambda unit: committed.append(unit.due))
    routed = Service(service, engine, clock).routed
    contact_id = uuid.uuid4()
    await service.routing_steps(
        [routed(RoutingEventType.QUEUED, contact_id, queue="returns", customer_tier="key_account")]
    )
    async with engine.connect() as conn:
        query = select(timers.c.due_at).where(timers.c.contact_id == contact_id, TIMER_PENDING)
        dues = list((await conn.execute(query)).scalars())
    assert len(dues) == 3 and committed == [min(dues)]  # the key-account hold, the SLA's warning and breach
    await service.routing_steps([routed(RoutingEventType.OFFERED, contact_id, queue="returns", agent_id="alice")])
    await service.routing_steps([routed(RoutingEventType.COMPLETED, contact_id, queue="returns", agent_id="alice")])
    assert committed == [min(dues), None, None]
