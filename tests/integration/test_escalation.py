"""The escalation service stores every routing event once, however often it is delivered."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import ROUTING_EVENTS, Channel, RoutingEvent, RoutingEventType
from kefu import kafka
from kefu.embedded import EmbeddedKafka
from services.escalation.config import EscalationSettings
from services.escalation.entrypoints.app import create_app
from tests.integration.support import eventually, serving

pytestmark = pytest.mark.integration


async def test_routing_events_are_stored_once(database_url: str, broker: EmbeddedKafka, config_path: Path) -> None:
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
        database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=config_path, consumer_group="esc-test"
    )
    async with serving(create_app(settings)) as client:
        producer = kafka.create_producer(broker.bootstrap)
        await producer.start()
        for event in [*events, events[1], events[2]]:  # redeliveries
            await producer.send_and_wait(ROUTING_EVENTS, event.model_dump_json().encode(), key=str(contact_id).encode())
        await producer.send_and_wait(ROUTING_EVENTS, b"garbage", key=b"x")
        await producer.stop()

        async def stored() -> list[dict[str, object]]:
            found = (await client.get("/v1/routing-events", params={"contact_id": str(contact_id)})).json()
            return list(found) if len(found) >= 3 else []

        history = await eventually(stored)
        assert [e["type"] for e in history] == ["queued", "offered", "accepted"]
        assert (await client.get("/v1/routing-events", params={"limit": 0})).status_code == 422
        assert (await client.get("/v1/routing-events", params={"contact_id": "nope"})).status_code == 422
        assert (await client.get("/readyz")).status_code == 200
