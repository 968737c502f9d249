"""Transfers, supervisor moves and escalation commands through the API and the commands consumer, against real
PostgreSQL and Tansu. The same decisions, and wrap-up, on the handlers without Kafka:
``tests/service/test_router_moves.py``."""

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import ROUTING_COMMANDS, ROUTING_EVENTS, RoutingCommand, RoutingEvent
from contracts.routing import RoutingCommandType
from services.router.adapters import state_store
from services.router.adapters.orm import assignments
from services.router.domain.config import parse_routing
from tests.integration.conftest import ADMIN_TOKEN, ALICE_TOKEN, BOB_TOKEN, CONFIG, SUPERVISOR_TOKEN
from tests.integration.support import (
    commands,
    contact_event,
    eventually,
    publish,
    publish_contacts,
    read_topic,
    router_settings,
    serving,
)
from tools.assemble import router_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

ALICE = {"authorization": f"Bearer {ALICE_TOKEN}"}
BOB = {"authorization": f"Bearer {BOB_TOKEN}"}
SUPERVISOR = {"authorization": f"Bearer {SUPERVISOR_TOKEN}"}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
CHEN = {"authorization": "Bearer test-token-chen-00000000"}
TECHNICAL_QUEUE = """    - {id: technical, name: Technical support, channels: [webchat], skills: {technical: 3},
        priority: 30, group: engineers}
  agents:"""
CHEN_TOKEN = """  tokens:
    - {token: test-token-chen-00000000, role: agent, agent_id: chen}"""


@pytest.fixture
def moves_config(tmp_path: Path) -> Path:
    """The shared test configuration plus a technical queue served by the engineers group (chen)."""
    path = tmp_path / "kefu.yaml"
    text = CONFIG.replace("  agents:", TECHNICAL_QUEUE, 1).replace("  tokens:", CHEN_TOKEN, 1)
    path.write_text(text, encoding="utf-8")
    return path


async def _assigned_to_alice(client: httpx.AsyncClient, broker: EmbeddedKafka, conversation: str) -> dict[str, Any]:
    event = contact_event(conversation, text="安装后无法开机")
    await publish_contacts(broker.bootstrap, event)

    async def offer() -> dict[str, Any] | None:
        found = (await client.get("/v1/agents/alice/offers", headers=ALICE)).json()
        return next((o for o in found if o["contact_id"] == str(event.event_id)), None)

    pending = await eventually(offer)
    accepted = await client.post(f"/v1/offers/{pending['offer_id']}/accept", headers=ALICE)
    assert accepted.status_code == 200, accepted.text
    assignment: dict[str, Any] = accepted.json()
    return assignment


async def _chen_offer(client: httpx.AsyncClient, contact_id: str) -> dict[str, Any]:
    async def offer() -> dict[str, Any] | None:
        found = (await client.get("/v1/agents/chen/offers", headers=SUPERVISOR)).json()
        return next((o for o in found if o["contact_id"] == contact_id), None)

    return await eventually(offer)


async def test_an_agent_transfers_to_a_group_queue_and_the_engineer_completes_with_a_disposition(
    database_url: str, broker: EmbeddedKafka, moves_config: Path
) -> None:
    app = create_app(router_settings(database_url, broker, moves_config))
    async with serving(app) as client:
        assignment = await _assigned_to_alice(client, broker, "t1")
        url = f"/v1/assignments/{assignment['assignment_id']}/transfer"
        for body, headers, status in [
            ({"queue_id": "technical"}, BOB, 404),  # not Bob's: to him it does not exist
            ({"queue_id": "nowhere"}, ALICE, 404),
            ({}, ALICE, 422),
            ({"queue_id": "technical", "colour": "red"}, ALICE, 422),
        ]:
            refused = await client.post(url, json=body, headers=headers)
            assert refused.status_code == status, refused.text
            assert refused.json()["error"]
        unknown = await client.post(
            f"/v1/assignments/{uuid.uuid4()}/transfer", json={"queue_id": "technical"}, headers=ALICE
        )
        assert unknown.status_code == 404

        moved = await client.post(url, json={"queue_id": "technical", "reason": "hardware fault"}, headers=ALICE)
        assert moved.status_code == 200, moved.text
        assert moved.json()["queue_id"] == "technical"
        again = await client.post(url, json={"queue_id": "technical"}, headers=ALICE)
        assert again.status_code == 404  # the assignment is closed: transferring twice is refused

        contact_id = assignment["contact_id"]
        offer = await _chen_offer(client, contact_id)
        accepted = await client.post(f"/v1/offers/{offer['offer_id']}/accept", headers=CHEN)
        assert accepted.status_code == 200, accepted.text
        engineer = accepted.json()
        done = await client.post(
            f"/v1/assignments/{engineer['assignment_id']}/complete",
            json={"disposition": "replaced power supply", "resolved": True},
            headers=CHEN,
        )
        assert done.status_code == 200, done.text
        timeline = (await client.get(f"/v1/contacts/{contact_id}", headers=SUPERVISOR)).json()
        assert timeline["messages"][0]["text"] == "安装后无法开机"  # the history came along

        # queued offered accepted assigned transferred requeued offered accepted assigned completed
        records = await read_topic(broker.bootstrap, ROUTING_EVENTS, at_least=10)
    events = [RoutingEvent.model_validate_json(r.value) for r in records]
    mine = [(e.type.value, e.queue_id) for e in events if str(e.contact_id) == contact_id]
    assert ("transferred", "presales") in mine
    assert ("requeued", "technical") in mine
    assert mine[-1] == ("completed", "technical")
    requeued = next(e for e in events if e.type.value == "requeued")
    assert requeued.reason == "hardware fault"
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(assignments.c.status, assignments.c.disposition, assignments.c.resolved))
            closed = sorted(tuple(r) for r in rows)
    finally:
        await engine.dispose()
    assert closed == [("completed", "replaced power supply", True), ("transferred", "transferred", None)]


async def test_an_escalation_command_moves_the_contact_once_and_survives_a_restart(
    database_url: str, broker: EmbeddedKafka, moves_config: Path
) -> None:
    settings = router_settings(database_url, broker, moves_config)
    app = create_app(settings)
    async with serving(app) as client:
        assignment = await _assigned_to_alice(client, broker, "e1")
        contact_id = uuid.UUID(assignment["contact_id"])
        command = RoutingCommand(
            command_id=uuid.uuid4(),
            type=RoutingCommandType.ESCALATE,
            issued_at=datetime.now(UTC),
            contact_id=contact_id,
            target_group="engineers",
            priority=90,
            target_agent_id="chen",
            reason="crisis lexicon: 起火",
        )
        moved_before, duplicates_before = commands("moved"), commands("duplicate")  # other tests count too
        for _ in range(2):  # a redelivery changes nothing
            await publish(
                broker.bootstrap, ROUTING_COMMANDS, (command.model_dump_json().encode(), str(contact_id).encode())
            )
        offer = await _chen_offer(client, str(contact_id))
        assert offer["priority"] == 90
        escalated = app.state.router.service.state.offers[uuid.UUID(offer["offer_id"])].contact
        assert escalated.preferred_agent == "chen"  # the command named one agent: they get first refusal
        assert commands("moved") == moved_before + 1

        async def duplicate_seen() -> bool:
            return commands("duplicate") == duplicates_before + 1

        await eventually(duplicate_seen)
        # a supervisor moves it while it is offered
        refused = await client.post(
            f"/v1/contacts/{contact_id}/move", json={"queue_id": "presales", "reason": "wrong"}, headers=ALICE
        )
        assert refused.status_code == 403
        moved = await client.post(
            f"/v1/contacts/{contact_id}/move",
            json={"queue_id": "returns", "priority": 40, "reason": "it is a return after all"},
            headers=SUPERVISOR,
        )
        assert moved.status_code == 200, moved.text
        # chen's offer was revoked; chen also serves returns, so a new offer follows, from the new queue
        again = await _chen_offer(client, str(contact_id))
        assert again["offer_id"] != offer["offer_id"]
        assert (again["queue_id"], again["priority"]) == ("returns", 40)
    # rebuilt from PostgreSQL, as after a restart
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            text = await asyncio.to_thread(moves_config.read_text, encoding="utf-8")
            config = parse_routing(text, moves_config)
            queues = {q.id: q.to_domain() for q in config.queues}
            state = await state_store.load_state(conn, queues, "presales")
    finally:
        await engine.dispose()
    waiting = state.waiting[contact_id]
    assert (waiting.ref.queue_id, waiting.ref.priority) == ("returns", 40)
    assert waiting.offers_made == 3  # alice's, chen's in technical, chen's in returns: the next gets a fresh id
    assert waiting.offer_id is not None  # chen's pending offer is restored too
