"""A contact's arrival and its offers, decided by the router's handlers on a real PostgreSQL without Kafka: applied
once, later messages joining it, expired offers moving on or coming back, by a clock the test moves. (Over Kafka:
the outbox relay, a restart and a poison message in ``tests/integration/test_router.py``.)"""

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ROUTING_EVENTS, ContactEventKind, RoutingEvent
from services.router import commands, events
from services.router.adapters.orm import applied_events, contacts, messages
from services.router.domain.model import Presence
from tests.integration.conftest import CONFIG
from tests.integration.support import contact_event, contact_events
from tests.service.conftest import Clock, Router, outbox_rows, start_router

pytestmark = pytest.mark.service


async def _count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


def _offers_of(router: Router, agent_id: str) -> list[uuid.UUID]:
    return [o.id for o in router.service.state.offers.values() if o.agent_id == agent_id]


async def _published(router: Router) -> list[RoutingEvent]:
    rows = await outbox_rows(router.engine)
    return [RoutingEvent.model_validate_json(r["payload"]) for r in rows if r["topic"] == ROUTING_EVENTS]


async def _later(router: Router, clock: Clock, seconds: float) -> None:
    """``seconds`` pass; the timers loop's round then."""
    clock.advance(seconds)
    await commands.tick(router.service)


async def test_the_same_event_three_times_makes_one_contact(router: Router) -> None:
    event = contact_event("c1", dedup="msg_dup")
    duplicates = contact_events("duplicate")
    await events.on_contacts(router.service, [event, event, event])  # one fetch, as the consumer hands it over
    assert _offers_of(router, "alice")
    assert contact_events("duplicate") == duplicates + 2
    assert len(router.service.state.waiting) == 1
    assert await _count(router.engine, contacts) == 1
    assert await _count(router.engine, messages) == 1
    assert await _count(router.engine, applied_events) == 1


async def test_a_later_message_joins_the_open_contact(router: Router) -> None:
    for text in ("first", "second"):
        await events.on_contact(router.service, contact_event("c1", text=text))
    assert await _count(router.engine, messages) == 2
    assert len(router.service.state.waiting) == 1
    assert await _count(router.engine, contacts) == 1


async def test_an_expired_offer_goes_to_the_next_agent(router: Router, clock: Clock) -> None:
    await commands.set_presence(router.service, "bob", Presence.AVAILABLE)
    await events.on_contact(router.service, contact_event("c1"))
    (first_offer,) = _offers_of(router, "alice") or _offers_of(router, "bob")
    first_agent = router.service.state.offers[first_offer].agent_id
    second_agent = "bob" if first_agent == "alice" else "alice"
    await _later(router, clock, 1)  # presales' offer_timeout_seconds
    assert _offers_of(router, second_agent)
    assert first_offer not in router.service.state.offers
    assert [e.type for e in await _published(router)][:4] == ["queued", "offered", "offer_timed_out", "offered"]


@pytest.fixture
def reoffer_config(tmp_path: Path) -> Path:
    path = tmp_path / "kefu-reoffer.yaml"
    text = CONFIG.replace("offer_timeout_seconds: 1}", "offer_timeout_seconds: 1, reoffer_after_seconds: 1}")
    path.write_text(text, encoding="utf-8")
    return path


async def test_an_offer_the_only_agent_let_expire_comes_back_to_them(
    engine: AsyncEngine, database_url: str, reoffer_config: Path, clock: Clock
) -> None:
    # alice alone (bob away): after her offer expires and the queue's reoffer wait, she is offered it again
    router = await start_router(engine, database_url, reoffer_config, clock)
    await events.on_contact(router.service, contact_event("c1"))
    await _later(router, clock, 1)  # the offer expires
    await _later(router, clock, 1)  # the reoffer wait is over
    assert any(w.offers_made >= 2 for w in router.service.state.waiting.values())
    assert [o.agent_id for o in router.service.state.offers.values()] == ["alice"]
    published = (await _published(router))[:4]
    assert [e.type for e in published] == ["queued", "offered", "offer_timed_out", "offered"]
    assert published[3].agent_id == "alice"


async def test_a_caller_hanging_up_in_the_queue_abandons_the_contact(router: Router) -> None:
    await events.on_contact(router.service, contact_event("call-1"))
    assert _offers_of(router, "alice")
    hangup = contact_event("call-1").model_copy(update={"kind": ContactEventKind.ABANDONED})
    await events.on_contact(router.service, hangup)
    assert not router.service.state.waiting and not router.service.state.offers
    assert router.service.state.agents["alice"].load.total() == 0
    assert [e.type for e in await _published(router)] == ["queued", "offered", "abandoned"]
