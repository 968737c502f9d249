"""A new contact's place, decided by the router's handlers on a real PostgreSQL without Kafka: classification rules,
the customer profile, sticky agents. (Over Kafka: ``tests/integration/test_router_intake.py``.)"""

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ROUTING_EVENTS, ContactEvent, Customer, RoutingEvent
from services.router import commands, events
from services.router.adapters.customers import Profile
from services.router.adapters.orm import contacts
from services.router.domain.config import CustomerTier
from tests.integration.conftest import CONFIG
from tests.integration.support import contact_event
from tests.integration.test_router_intake import RULES
from tests.service.conftest import Clock, Router, outbox_rows, start_router
from tests.service.test_router_late_writes import Statements, _touching

pytestmark = pytest.mark.service


@pytest.fixture
def intake_config(tmp_path: Path) -> Path:
    """The integration twin's rules (``RULES``) in the test configuration."""
    path = tmp_path / "kefu.yaml"
    path.write_text(CONFIG.replace("  routes:\n", RULES + "  routes:\n", 1), encoding="utf-8")
    return path


@pytest.fixture
async def intake_router(engine: AsyncEngine, database_url: str, intake_config: Path, clock: Clock) -> Router:
    return await start_router(engine, database_url, intake_config, clock)


def _event(conversation: str, visitor: str, text: str) -> ContactEvent:
    """A first message of ``conversation`` from the customer ``visitor`` (several conversations may share one)."""
    event = contact_event(conversation, text=text)
    return event.model_copy(update={"customer": Customer(platform_id=visitor, language="zh-CN")})


async def _opened(router: Router, event: ContactEvent) -> Any:
    """``event`` applied as the contacts consumer applies it; the contact row it opened."""
    await events.on_contact(router.service, event)
    return await _contact_row(router.engine, event.event_id)


async def _contact_row(engine: AsyncEngine, contact_id: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        row = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).mappings().first()
    assert row is not None
    return row


async def _queued_event(router: Router, contact_id: uuid.UUID) -> RoutingEvent:
    rows = await outbox_rows(router.engine)
    published = [RoutingEvent.model_validate_json(r["payload"]) for r in rows if r["topic"] == ROUTING_EVENTS]
    return next(e for e in published if e.contact_id == contact_id and e.type == "queued")


async def test_a_keyword_places_the_contact_in_the_rules_queue_with_its_priority_and_category(
    intake_router: Router,
) -> None:
    refund, plain = _event("r1", "visitor-r1", "我要退货, refund please"), _event("p1", "visitor-p1", "这款冰箱多少钱")
    await events.on_contacts(intake_router.service, [refund, plain])  # one fetch, as the consumer hands it over
    row = await _contact_row(intake_router.engine, refund.event_id)
    assert (row["queue_id"], row["priority"], row["category"], row["tier"]) == (
        "returns",
        55,
        "refunds",
        "standard",
    )
    other = await _contact_row(intake_router.engine, plain.event_id)
    assert (other["queue_id"], other["priority"], other["category"]) == ("presales", 10, None)
    queued = await _queued_event(intake_router, refund.event_id)
    assert (queued.queue_id, queued.priority, queued.category) == ("returns", 55, "refunds")
    assert queued.customer_id == row["customer_id"]
    assert queued.customer_tier == "standard"


async def test_a_key_account_prefers_its_tam_and_a_returning_customer_their_last_agent(
    intake_router: Router,
) -> None:
    router = intake_router
    served_by, row = await _served_and_back(router)
    assert row["preferred_agent"] == served_by
    assert row["prefer_until"] - row["enqueued_at"] == timedelta(seconds=30)

    # a key account prefers its owning TAM over anyone, for key_account_wait_seconds
    tam_first = _event("t1", "visitor-t", "你好")
    customer_id = (await _opened(router, tam_first))["customer_id"]
    await commands.set_customer_profile(router.service, customer_id, Profile(CustomerTier.KEY_ACCOUNT, "chen"))
    tam_again = _event("t2", "visitor-t", "设备又坏了")
    tam_row = await _opened(router, tam_again)
    assert (tam_row["preferred_agent"], tam_row["tier"], tam_row["owning_tam"]) == ("chen", "key_account", "chen")
    assert (tam_row["category"], tam_row["priority"]) == ("key accounts", 70)
    assert tam_row["prefer_until"] - tam_row["enqueued_at"] == timedelta(seconds=45)
    queued = await _queued_event(router, tam_again.event_id)
    assert (queued.customer_tier, queued.owning_tam, queued.category) == ("key_account", "chen", "key accounts")

    # a new customer has nobody to wait for
    stranger = _event("n1", "visitor-n", "你好")
    assert (await _opened(router, stranger))["preferred_agent"] is None


async def test_without_a_sticky_section_nobody_is_preferred(router: Router) -> None:
    _, row = await _served_and_back(router)
    assert (row["preferred_agent"], row["prefer_until"]) == (None, None)


async def _served_and_back(router: Router) -> tuple[str, Any]:
    """A customer is served by some agent, then writes again on another conversation: that agent's id, and the
    new contact's row."""
    await events.on_contact(router.service, _event("s1", "visitor-s", "你好"))
    offers = list(router.service.state.offers.values())
    assert len(offers) == 1
    offer = offers[0]
    assignment = await commands.accept(router.service, offer.id, offer.agent_id)
    await commands.complete(router.service, assignment.id, None)
    return offer.agent_id, await _opened(router, _event("s2", "visitor-s", "还是上次的问题"))


async def test_a_contacts_customer_profile_and_last_agent_are_read_in_one_statement(intake_router: Router) -> None:
    router = intake_router
    read: list[list[str]] = []

    async def opened(conversation: str) -> Any:
        event = _event(conversation, "visitor-o", "你好")
        with Statements(router) as sent:
            await events.on_contact(router.service, event)
        read.append(_touching(sent, "customers", "customer_identities", "assignments"))
        return await _contact_row(router.engine, event.event_id)

    first = await opened("o1")  # a new customer: created, with the default profile and nobody to wait for
    assert (first["tier"], first["preferred_agent"]) == ("standard", None)
    (offer,) = router.service.state.offers.values()
    assignment = await commands.accept(router.service, offer.id, offer.agent_id)
    await commands.complete(router.service, assignment.id, None)
    assert (await opened("o2"))["preferred_agent"] == offer.agent_id  # back: their last agent
    await commands.set_customer_profile(router.service, first["customer_id"], Profile(CustomerTier.VIP, None))
    assert (await opened("o3"))["tier"] == "vip"
    assert [len(statements) for statements in read] == [1, 1, 1]  # 3, 3 and 3 before (identity, profile, last)
