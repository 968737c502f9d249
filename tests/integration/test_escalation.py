"""The escalation service stores every routing event once, however often it is delivered."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import (
    ESCALATIONS,
    ROUTING_COMMANDS,
    ROUTING_EVENTS,
    Channel,
    EscalationEvent,
    RoutingCommand,
    RoutingEvent,
    RoutingEventType,
)
from kefu import kafka
from services.escalation.config import EscalationSettings
from tests.integration.conftest import ALICE_TOKEN, SUPERVISOR_TOKEN
from tests.integration.support import eventually, read_topic, serving
from tools.assemble import escalation_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

ALICE = {"authorization": f"Bearer {ALICE_TOKEN}"}
SUPERVISOR = {"authorization": f"Bearer {SUPERVISOR_TOKEN}"}


async def test_routing_events_are_stored_once(
    database_url: str, broker: EmbeddedKafka, escalation_config_path: Path
) -> None:
    contact_id = uuid.uuid4()
    events = [
        RoutingEvent(
            event_id=uuid.uuid4(),
            type=kind,
            occurred_at=datetime.now(UTC),
            contact_id=contact_id,
            conversation_key="webchat:shop:c1",
            channel=Channel.WEBCHAT,
            queue_id="presales",
            agent_id="alice" if kind is not RoutingEventType.QUEUED else None,
        )
        for kind in (RoutingEventType.QUEUED, RoutingEventType.OFFERED, RoutingEventType.ACCEPTED)
    ]
    settings = EscalationSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        config_path=escalation_config_path,
        consumer_group="esc-test",
    )
    async with serving(create_app(settings)) as client:
        producer = kafka.create_producer(broker.bootstrap)
        await producer.start()
        for event in [*events, events[1], events[2]]:  # redeliveries
            await producer.send_and_wait(ROUTING_EVENTS, event.model_dump_json().encode(), key=str(contact_id).encode())
        await producer.send_and_wait(ROUTING_EVENTS, b"garbage", key=b"x")
        await producer.stop()

        async def stored() -> list[dict[str, object]]:
            found = (
                await client.get("/v1/routing-events", params={"contact_id": str(contact_id)}, headers=SUPERVISOR)
            ).json()
            return list(found) if len(found) >= 3 else []

        history = await eventually(stored)
        assert [e["type"] for e in history] == ["queued", "offered", "accepted"]
        assert (await client.get("/v1/routing-events", params={"limit": 0}, headers=SUPERVISOR)).status_code == 422
        assert (
            await client.get("/v1/routing-events", params={"contact_id": "nope"}, headers=SUPERVISOR)
        ).status_code == 422
        assert (await client.get("/v1/routing-events")).status_code == 401  # the history names customers and agents
        assert (await client.get("/v1/routing-events", headers=ALICE)).status_code == 403
        assert (await client.get("/readyz")).status_code == 200


async def test_escalation_cases_by_hand(database_url: str, broker: EmbeddedKafka, escalation_config_path: Path) -> None:
    settings = EscalationSettings(
        database_url=database_url,
        kafka_bootstrap=broker.bootstrap,
        config_path=escalation_config_path,
        consumer_group="esc-2",
    )
    alice = {"authorization": f"Bearer {ALICE_TOKEN}"}
    supervisor = {"authorization": f"Bearer {SUPERVISOR_TOKEN}"}
    contact_id = str(uuid.uuid4())
    async with serving(create_app(settings)) as client:
        body = {
            "contact_id": contact_id,
            "target": "engineers",
            "reason": "设备反复报错 E4",
            "evidence": {"message": "m1"},
        }
        assert (await client.post("/v1/escalations", json=body)).status_code == 401
        # alice holds no such contact (test_access: an agent escalates what it holds); a supervisor escalates any
        assert (await client.post("/v1/escalations", json=body, headers=alice)).status_code == 404
        opened = await client.post("/v1/escalations", json=body, headers=supervisor)
        assert opened.status_code == 201, opened.text
        case = opened.json()
        assert (case["status"], case["target"], case["trigger"]) == ("open", "engineers", "manual.engineers")
        assert [entry["action"] for entry in case["audit"]] == ["open"]
        again = await client.post("/v1/escalations", json=body, headers=supervisor)
        assert again.status_code == 409  # never twice for the same trigger
        unknown = await client.post("/v1/escalations", json={**body, "target": "marketing"}, headers=supervisor)
        assert unknown.status_code == 422

        url = f"/v1/escalations/{case['case_id']}"
        acked = await client.post(f"{url}/acknowledge", json={"note": "on it"}, headers=supervisor)
        assert acked.json()["status"] == "acknowledged"
        assert (await client.post(f"{url}/acknowledge", headers=supervisor)).status_code == 409
        resolved = await client.post(f"{url}/resolve", headers=supervisor)
        assert resolved.json()["status"] == "resolved"
        assert [e["action"] for e in resolved.json()["audit"]] == ["open", "acknowledge", "resolve"]
        assert (await client.post(f"{url}/cancel", headers=supervisor)).status_code == 409
        assert (await client.post(f"{url}/reopen", headers=supervisor)).status_code == 422
        assert (await client.get(f"/v1/escalations/{uuid.uuid4()}", headers=supervisor)).status_code == 404

        listed = (await client.get("/v1/escalations", params={"status": "resolved"}, headers=supervisor)).json()
        assert [c["case_id"] for c in listed] == [case["case_id"]]
        assert (await client.get("/v1/escalations", params={"status": "open"}, headers=supervisor)).json() == []

    events = [
        EscalationEvent.model_validate_json(r.value)
        for r in await read_topic(broker.bootstrap, ESCALATIONS, at_least=3)
    ]
    assert [e.status for e in events] == ["open", "acknowledged", "resolved"]
    (command,) = [
        RoutingCommand.model_validate_json(r.value)
        for r in await read_topic(broker.bootstrap, ROUTING_COMMANDS, at_least=1)
    ]
    assert (str(command.contact_id), command.target_group, command.type) == (contact_id, "engineers", "escalate")
