"""The escalation service's wiring end to end: events on a real Tansu broker, facts, cases and timers in a real
PostgreSQL, routing commands back on ``kefu.routing.commands.v1``, signed webhooks to a loopback receiver, the timer
runner across a restart, the case API. Each trigger's decision is tested on the handlers, without Kafka:
``tests/service/test_escalation_flow.py``."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel
from sqlalchemy import select

from contracts import (
    CONTACTS,
    ROUTING_COMMANDS,
    ROUTING_EVENTS,
    Channel,
    ContactEvent,
    RoutingCommand,
    RoutingEvent,
    RoutingEventType,
)
from kefu import db, kafka
from services.escalation.adapters.orm import timers
from services.escalation.adapters.timer_runner import Handler, TimerRunner
from services.escalation.config import EscalationSettings
from tests.integration.conftest import SUPERVISOR_TOKEN
from tests.integration.support import contact_event, eventually, free_port, read_topic, server_in_thread, serving
from tests.integration.test_escalation_notifier import SECRET, Received, Receiver
from tools.assemble import escalation_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

SUPERVISOR = {"authorization": f"Bearer {SUPERVISOR_TOKEN}"}

POLICY = """
escalation:
  targets:
    engineers:
      group: engineers
      queue: technical
      priority: 70
      notify: [{{name: oncall, url: "{url}", secret: KEFU_TEST_WEBHOOK}}]
    tam: {{group: tam, fallback_group: tam, queue: key-accounts, priority: 80}}
    supervisors: {{group: supervisors, queue: complaints, priority: 60}}
    crisis:
      group: crisis
      queue: crisis
      priority: 100
      notify: [{{name: crisis-room, url: "{url}", secret: KEFU_TEST_WEBHOOK}}]
  levels:
    engineers: {{ack_timeout_seconds: {ack}, next: supervisors}}
    supervisors: {{ack_timeout_seconds: 600, next: crisis}}
  triggers:
    sla:
      target: supervisors
      warn_at_percent: 50
      clocks:
        - {{queue: returns, first_response_seconds: 2}}
    key_account: {{target: tam, hold_minutes: 0.02}}
    technical: {{target: engineers, categories: [technical], max_transfers: 2}}
    crisis:
      target: crisis
      lexicon:
        media: {{terms: [曝光, 记者, journalist]}}
        safety: {{terms: [起火, fire], exclusions: [fire drill]}}
    repeat_contact: {{target: supervisors, contacts: 3, within_hours: 1}}
"""


@dataclass
class Service:
    client: httpx.AsyncClient
    producer: AIOKafkaProducer
    broker: EmbeddedKafka
    receiver: Receiver

    async def publish(self, topic: str, event: BaseModel, key: str) -> None:
        await self.producer.send_and_wait(topic, event.model_dump_json().encode(), key=key.encode())

    async def contact(self, event: ContactEvent) -> None:
        await self.publish(CONTACTS, event, event.conversation_key)

    async def routing(self, event: RoutingEvent) -> None:
        await self.publish(ROUTING_EVENTS, event, str(event.contact_id))

    async def cases(self, contact_id: uuid.UUID) -> list[dict[str, Any]]:
        found = await self.client.get("/v1/escalations", params={"contact_id": str(contact_id)}, headers=SUPERVISOR)
        assert found.status_code == 200, found.text
        return list(found.json())

    async def case_for(self, contact_id: uuid.UUID, trigger: str, *, timeout: float = 60.0) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            return next((c for c in await self.cases(contact_id) if c["trigger"] == trigger), None)

        return await eventually(probe, timeout=timeout)

    async def commands(self, contact_id: uuid.UUID, at_least: int = 1) -> list[RoutingCommand]:
        async def probe() -> list[RoutingCommand] | None:
            records = await read_topic(self.broker.bootstrap, ROUTING_COMMANDS, timeout=2)
            found = [RoutingCommand.model_validate_json(r.value) for r in records]
            mine = [c for c in found if c.contact_id == contact_id]
            return mine if len(mine) >= at_least else None

        return await eventually(probe)

    async def settle(self) -> None:
        """Wait until both consumers have applied everything published so far: a sentinel on each topic, the
        contact's a crisis word that opens a case once applied (and the router has queued it)."""
        sentinel = routed(RoutingEventType.QUEUED, uuid.uuid4(), queue="sentinel")
        message = contact_event(f"sentinel-{uuid.uuid4().hex}", text="sentinel: fire")
        await self.routing(sentinel)
        await self.contact(message)
        await self.routing(
            routed(
                RoutingEventType.QUEUED, message.event_id, queue="sentinel", conversation_key=message.conversation_key
            )
        )

        async def applied() -> bool:
            stored = await self.client.get(
                "/v1/routing-events", params={"contact_id": str(sentinel.contact_id)}, headers=SUPERVISOR
            )
            return bool(stored.json()) and bool(await self.cases(message.event_id))

        await eventually(applied)


def routed(kind: RoutingEventType, contact_id: uuid.UUID, *, queue: str = "presales", **fields: Any) -> RoutingEvent:
    return RoutingEvent(
        event_id=uuid.uuid4(),
        type=kind,
        occurred_at=fields.pop("occurred_at", datetime.now(UTC)),
        contact_id=contact_id,
        conversation_key=fields.pop("conversation_key", f"webchat:shop:{contact_id}"),
        channel=fields.pop("channel", Channel.WEBCHAT),
        queue_id=queue,
        **fields,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    fake = Receiver(port=free_port())
    with server_in_thread(fake.app(), fake.port, name="webhook-receiver"):
        yield fake


def write_policy(tmp_path: Path, receiver: Receiver, *, ack: float = 1.0) -> Path:
    path = tmp_path / "escalation.yaml"
    path.write_text(POLICY.format(url=receiver.url, ack=ack), encoding="utf-8")
    return path


@pytest.fixture
def settings(
    tmp_path: Path,
    database_url: str,
    broker: EmbeddedKafka,
    escalation_config_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> EscalationSettings:
    monkeypatch.setenv("KEFU_TEST_WEBHOOK", SECRET)
    return EscalationSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        config_path=escalation_config_path,
        policy_path=write_policy(tmp_path, receiver),
        consumer_group="esc-flow",
    )


@contextlib.asynccontextmanager
async def started(settings: EscalationSettings, broker: EmbeddedKafka, receiver: Receiver) -> AsyncIterator[Service]:
    async with serving(create_app(settings)) as client:
        producer = kafka.create_producer(broker.bootstrap)
        await producer.start()
        try:
            yield Service(client, producer, broker, receiver)
        finally:
            await producer.stop()


@pytest.fixture
async def service(settings: EscalationSettings, broker: EmbeddedKafka, receiver: Receiver) -> AsyncIterator[Service]:
    async with started(settings, broker, receiver) as running:
        yield running


async def test_a_crisis_word_moves_the_contact_to_the_crisis_group_at_highest_priority_once(
    service: Service,
) -> None:
    first = contact_event("crisis-1", text="冰箱坏了")
    crisis = contact_event("crisis-1", text="再不处理我就找记者曝光")
    queued = routed(RoutingEventType.QUEUED, first.event_id, conversation_key=first.conversation_key)
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

    # the webhook of the crisis group hears of it, signed
    async def notified() -> list[Received]:
        return [r for r in service.receiver.delivered() if str(first.event_id).encode() in r.body]

    (delivered,) = await eventually(notified)
    assert delivered.verified and b'"escalation.opened"' in delivered.body

    # replayed events change nothing: the same messages and routing event again, then a harmless one
    for event in (first, crisis):
        await service.contact(event)
    await service.routing(queued)
    await service.contact(contact_event("crisis-1", text="没有起火，只是想问问进度"))
    await service.settle()
    assert [c["trigger"] for c in await service.cases(first.event_id)] == ["crisis"]
    assert len(await service.commands(first.event_id)) == 1
    assert len(await notified()) == 1


async def test_manual_targets_come_from_the_policy_and_closed_cases_refuse_changes(service: Service) -> None:
    contact_id = str(uuid.uuid4())
    unknown = await service.client.post(
        "/v1/escalations", json={"contact_id": contact_id, "target": "marketing", "reason": "x"}, headers=SUPERVISOR
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"] == "unknown_target"
    for known in ("engineers", "tam", "supervisors", "crisis"):
        assert known in unknown.json()["detail"]
    body = {"contact_id": contact_id, "target": "tam", "reason": "key account asked for its TAM", "priority": 90}
    case = (await service.client.post("/v1/escalations", json=body, headers=SUPERVISOR)).json()
    assert (case["trigger"], case["priority"]) == ("manual.tam", 90)
    url = f"/v1/escalations/{case['case_id']}"
    assert (await service.client.post(f"{url}/cancel", headers=SUPERVISOR)).json()["status"] == "cancelled"
    for action in ("acknowledge", "resolve", "cancel"):
        refused = await service.client.post(f"{url}/{action}", headers=SUPERVISOR)
        assert refused.status_code == 409 and refused.json()["error"] == "case_closed"
    missing = await service.client.post(f"/v1/escalations/{uuid.uuid4()}/resolve", headers=SUPERVISOR)
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_case"


async def pending_timers(database_url: str) -> dict[str, datetime | None]:
    """Every timer's kind and when it fired (None: pending)."""
    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(timers.c.kind, timers.c.fired_at))
            return {kind: fired for kind, fired in rows}
    finally:
        await engine.dispose()


async def test_timers_due_while_the_service_is_down_fire_once_after_restart(
    settings: EscalationSettings, broker: EmbeddedKafka, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = uuid.uuid4()

    async def killed_before_they_came_due(runner: TimerRunner, handler: Handler) -> int:
        return 0  # the first run fires nothing however long it takes to stop (1 s was not always enough under load)

    with monkeypatch.context() as patch:
        patch.setattr(TimerRunner, "fire_due", killed_before_they_came_due)
        async with started(settings, broker, receiver) as service:
            await service.routing(routed(RoutingEventType.QUEUED, held, customer_tier="key_account"))
            body = {"contact_id": str(uuid.uuid4()), "target": "engineers", "reason": "needs an engineer"}
            manual = (await service.client.post("/v1/escalations", json=body, headers=SUPERVISOR)).json()

            async def scheduled() -> dict[str, datetime | None] | None:
                found = await pending_timers(settings.database_url)
                return found if "key_account.hold" in found else None

            before = await eventually(scheduled)
        # killed before either came due: the key-account hold and the engineers' acknowledgement
        assert before["key_account.hold"] is None and before["ack.level1"] is None
    await asyncio.sleep(2.0)  # both come due while it is down
    restarted = datetime.now(UTC)

    async with started(settings, broker, receiver) as service:
        case = await service.case_for(held, "key_account")

        async def climbed() -> dict[str, Any] | None:
            found = (await service.client.get(f"/v1/escalations/{manual['case_id']}", headers=SUPERVISOR)).json()
            return found if found["level"] == 2 else None

        await eventually(climbed)
        await asyncio.sleep(1.0)
        await service.settle()
        assert [c["trigger"] for c in await service.cases(held)] == ["key_account"]
        again = (await service.client.get(f"/v1/escalations/{manual['case_id']}", headers=SUPERVISOR)).json()
        assert [a["action"] for a in again["audit"]] == ["open", "climb"]
        assert len(await service.commands(held)) == 1 and case["status"] == "open"
    fired = await pending_timers(settings.database_url)
    for kind in ("key_account.hold", "ack.level1"):
        at = fired[kind]
        assert at is not None and at >= restarted
