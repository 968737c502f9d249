"""Two decisions one event makes, written in one statement (``repository.persist``): a new contact's row and its
offer when it is offered at once, an accepted offer and the assignment made of it; the same rows as one statement a
decision wrote."""

from typing import Any

import pytest
from sqlalchemy import select

from contracts import RoutingEvent
from services.router import commands, events
from services.router.adapters.orm import agents, assignments, contacts, offers
from tests.integration.support import contact_event
from tests.service.conftest import Router, outbox_rows
from tests.service.test_router_late_writes import Statements

pytestmark = pytest.mark.service

WRITES = ("INSERT INTO router.", "UPDATE router.", "WITH offer_", "WITH assignment_")


def _writes(sent: list[str], *tables: str) -> list[str]:
    """The statements of ``sent`` that write (a CTE's INSERT or UPDATE included) any of ``tables``."""
    writing = [s for s in sent if s.startswith(WRITES)]
    return [s for s in writing if any(f"INSERT INTO router.{t} " in s or f"UPDATE router.{t} " in s for t in tables)]


async def _rows(router: Router, table: Any) -> list[Any]:
    async with router.engine.connect() as conn:
        return list((await conn.execute(select(table))).mappings())


async def test_a_contact_offered_as_it_arrives_is_written_with_its_offer_in_one_statement(router: Router) -> None:
    fetch = [contact_event("c1"), contact_event("c2"), contact_event("c3")]  # c3: every agent's slot taken
    with Statements(router) as sent:
        await events.on_contacts(router.service, fetch)
    assert len(_writes(sent, "contacts", "offers")) == 3  # a statement a contact (5 before: c1, c2 two each)
    status = {row["id"]: row["status"] for row in await _rows(router, contacts)}
    assert [status[e.event_id] for e in fetch] == ["offered", "offered", "queued"]
    pending = {row["contact_id"]: row for row in await _rows(router, offers)}
    assert sorted(pending, key=str) == sorted((fetch[0].event_id, fetch[1].event_id), key=str)
    for offer in router.service.state.offers.values():
        row = pending[offer.contact.id]
        assert (row["id"], row["agent_id"], row["status"]) == (offer.id, offer.agent_id, "pending")
        assert (row["created_at"], row["expires_at"]) == (router.service.clock(), offer.expires_at)
    published = [RoutingEvent.model_validate_json(r["payload"]) for r in await outbox_rows(router.engine)]
    assert [e.type.value for e in published] == ["queued", "offered", "queued", "offered", "queued"]


async def test_an_accepted_offer_is_written_with_its_assignment_in_one_statement(router: Router) -> None:
    await events.on_contacts(router.service, [contact_event("c1")])
    (offer,) = router.service.state.offers.values()
    with Statements(router) as sent:
        assignment = await commands.accept(router.service, offer.id, offer.agent_id)
    assert len(_writes(sent, "offers", "assignments", "contacts", "agents")) == 1  # 2 before
    (closed,) = await _rows(router, offers)
    now = router.service.clock()
    assert (closed["status"], closed["closed_at"]) == ("accepted", now)
    (made,) = await _rows(router, assignments)
    assert (made["id"], made["offer_id"], made["contact_id"]) == (assignment.id, offer.id, offer.contact.id)
    assert (made["agent_id"], made["status"], made["assigned_at"]) == (offer.agent_id, "active", now)
    assert [row["status"] for row in await _rows(router, contacts)] == ["assigned"]
    agent = next(row for row in await _rows(router, agents) if row["id"] == offer.agent_id)
    assert agent["missed_offers"] == 0
    types = [RoutingEvent.model_validate_json(r["payload"]).type.value for r in await outbox_rows(router.engine)]
    assert types == ["queued", "offered", "accepted", "assigned"]
