"""Transfers, escalation commands, supervisor moves, dispositions and wrap-up, decided by the router's handlers on a
real PostgreSQL without Kafka. (Over Kafka and HTTP, with the API's refusals: ``tests/integration/
test_router_moves.py``.)"""

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ROUTING_EVENTS, RoutingCommand, RoutingEvent
from contracts.routing import RoutingCommandType
from services.router import commands, events, queries
from services.router.adapters import state_store
from services.router.adapters.orm import assignments
from services.router.domain.config import AgentConfig, parse_routing
from services.router.domain.model import Assignment
from tests.integration.conftest import CONFIG
from tests.integration.support import commands as counted
from tests.integration.support import contact_event
from tests.integration.test_router_moves import CHEN_TOKEN, TECHNICAL_QUEUE
from tests.service.conftest import Clock, Router, outbox_rows, start_router

pytestmark = pytest.mark.service


@pytest.fixture
def moves_config(tmp_path: Path) -> Path:
    """The shared test configuration plus a technical queue served by the engineers group (chen)."""
    path = tmp_path / "kefu.yaml"
    text = CONFIG.replace("  agents:", TECHNICAL_QUEUE, 1).replace("  tokens:", CHEN_TOKEN, 1)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
async def router(engine: AsyncEngine, database_url: str, moves_config: Path, clock: Clock) -> Router:
    return await start_router(engine, database_url, moves_config, clock)


async def _assigned_to_alice(router: Router, conversation: str) -> Assignment:
    event = contact_event(conversation, text="安装后无法开机")
    await events.on_contact(router.service, event)
    found = await queries.offers_of(router.service, "alice")
    pending = next(o for o in found if o["contact_id"] == str(event.event_id))
    return await commands.accept(router.service, uuid.UUID(pending["offer_id"]), "alice")


async def _chen_offer(router: Router, contact_id: str) -> dict[str, Any]:
    return next(o for o in await queries.offers_of(router.service, "chen") if o["contact_id"] == contact_id)


async def test_an_agent_transfers_to_a_group_queue_and_the_engineer_completes_with_a_disposition(
    router: Router,
) -> None:
    assignment = await _assigned_to_alice(router, "t1")
    target = commands.TransferTarget(queue_id="technical", reason="hardware fault")
    moved = await commands.transfer(router.service, assignment.id, "alice", target)
    assert moved.queue_id == "technical"

    contact_id = str(assignment.contact.id)
    offer = await _chen_offer(router, contact_id)
    engineer = await commands.accept(router.service, uuid.UUID(offer["offer_id"]), "chen")
    await commands.complete(router.service, engineer.id, "chen", disposition="replaced power supply", resolved=True)
    timeline = await queries.contact(router.service, assignment.contact.id)
    assert timeline["messages"][0]["text"] == "安装后无法开机"  # the history came along

    # queued offered accepted assigned transferred requeued offered accepted assigned completed
    rows = await outbox_rows(router.engine)
    published = [RoutingEvent.model_validate_json(r["payload"]) for r in rows if r["topic"] == ROUTING_EVENTS]
    mine = [(e.type.value, e.queue_id) for e in published if str(e.contact_id) == contact_id]
    assert ("transferred", "presales") in mine
    assert ("requeued", "technical") in mine
    assert mine[-1] == ("completed", "technical")
    requeued = next(e for e in published if e.type.value == "requeued")
    assert requeued.reason == "hardware fault"
    async with router.engine.connect() as conn:
        found = await conn.execute(select(assignments.c.status, assignments.c.disposition, assignments.c.resolved))
        closed = sorted(tuple(r) for r in found)
    assert closed == [("completed", "replaced power supply", True), ("transferred", "transferred", None)]


async def test_an_escalation_command_moves_the_contact_once_and_survives_a_restart(
    router: Router, moves_config: Path
) -> None:
    assignment = await _assigned_to_alice(router, "e1")
    contact_id = assignment.contact.id
    command = RoutingCommand(
        command_id=uuid.uuid4(),
        type=RoutingCommandType.ESCALATE,
        issued_at=router.service.clock(),
        contact_id=contact_id,
        target_group="engineers",
        priority=90,
        target_agent_id="chen",
        reason="crisis lexicon: 起火",
    )
    moved_before, duplicates_before = counted("moved"), counted("duplicate")  # other tests count too
    for _ in range(2):  # a redelivery changes nothing
        await events.on_command(router.service, command)
    offer = await _chen_offer(router, str(contact_id))
    assert offer["priority"] == 90
    escalated = router.service.state.offers[uuid.UUID(offer["offer_id"])].contact
    assert escalated.preferred_agent == "chen"  # the command named one agent: they get first refusal
    assert counted("moved") == moved_before + 1
    assert counted("duplicate") == duplicates_before + 1

    # a supervisor moves it while it is offered
    await commands.move(router.service, contact_id, "returns", "it is a return after all", priority=40)
    # chen's offer was revoked; chen also serves returns, so a new offer follows, from the new queue
    again = await _chen_offer(router, str(contact_id))
    assert again["offer_id"] != offer["offer_id"]
    assert (again["queue_id"], again["priority"]) == ("returns", 40)

    # rebuilt from PostgreSQL, as after a restart
    async with router.engine.connect() as conn:
        text = await asyncio.to_thread(moves_config.read_text, encoding="utf-8")
        config = parse_routing(text, moves_config)
        queues = {q.id: q.to_domain() for q in config.queues}
        state = await state_store.load_state(conn, queues, "presales")
    waiting = state.waiting[contact_id]
    assert (waiting.ref.queue_id, waiting.ref.priority) == ("returns", 40)
    assert waiting.offers_made == 3  # alice's, chen's in technical, chen's in returns: the next gets a fresh id
    assert waiting.offer_id is not None  # chen's pending offer is restored too


async def test_wrap_up_follows_a_completion_and_the_desktop_hears_of_it(router: Router, clock: Clock) -> None:
    alice = {"name": "Alice", "groups": ["tier1"], "skills": {"presales": 4}, "capacity": {"webchat": 2}}
    await commands.upsert_agent(
        router.service, AgentConfig.model_validate({**alice, "wrap_up_seconds": 1, "id": "alice"})
    )
    assignment = await _assigned_to_alice(router, "w1")
    with router.feed.subscribe("alice") as feed:
        await commands.complete(router.service, assignment.id, "alice", disposition="answered", resolved=True)
        clock.advance(1)
        await commands.tick(router.service)  # the timers loop's round once the wrap-up is due
        seen = [await asyncio.wait_for(feed.get(), 5) for _ in range(3)]
    assert all(seen), "nothing dropped"
    names = [item.name for item in seen if item]
    assert names == ["assignment.closed", "presence.changed", "presence.changed"]
    wrap_up, back = (item.payload for item in seen[1:] if item)
    assert wrap_up["presence"] == "wrap_up" and wrap_up["until"] is not None
    assert back == {"presence": "available", "until": None, "reason": None}
    view = queries.agent(router.service, "alice")
    assert view is not None and view.presence.value == "available"
