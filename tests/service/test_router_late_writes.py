"""A routing transaction's late rows (``services.router.adapters.late_writes``): messages, routing events (outbox and
history) and desktop notices, written in one statement before the commit, in the order decided, and read back as
they were added; and the customer of a message resolved in one statement (``customers.resolve``)."""

from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import select

from contracts import ROUTING_EVENTS, Attachment, Message, RoutingEvent
from services.router import commands, events
from services.router.adapters import feed_store
from services.router.adapters.orm import contacts, customer_identities, customers, messages, routing_history
from tests.integration.support import contact_event
from tests.service.conftest import Router, outbox_rows

pytestmark = pytest.mark.service


class Statements:
    """The statements SQLAlchemy sends on ``router``'s engine while in the block."""

    def __init__(self, router: Router) -> None:
        self.engine = router.engine.sync_engine
        self.sent: list[str] = []

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sent.append(statement)

    def __enter__(self) -> list[str]:
        sqlalchemy.event.listen(self.engine, "before_cursor_execute", self._count)
        return self.sent

    def __exit__(self, *_: object) -> None:
        sqlalchemy.event.remove(self.engine, "before_cursor_execute", self._count)


def _touching(sent: list[str], *tables: str) -> list[str]:
    return [s for s in sent if any(f"router.{table} " in s for table in tables)]


async def test_a_fetch_writes_its_late_rows_in_one_statement_in_the_order_decided(router: Router) -> None:
    photo = Attachment(name="收据.jpg", content_type="image/jpeg", size=48213)
    first = contact_event("c1").model_copy(update={"message": Message(text="你好", attachments=(photo,))})
    first = first.model_copy(update={"metadata": {"page": "/orders/42"}})
    fetch = [first, contact_event("c2"), contact_event("c1", text="still there?"), contact_event("c3")]
    with Statements(router) as sent, router.feed.subscribe("alice") as desktop:
        await events.on_contacts(router.service, fetch)
        pushed = [await desktop.get() for _ in range(2)]
    assert len(_touching(sent, "messages", "outbox", "routing_history", "agent_feed")) == 1

    published = [RoutingEvent.model_validate_json(r["payload"]) for r in await outbox_rows(router.engine)]
    c1, c2, c3 = (e.event_id for e in (first, fetch[1], fetch[3]))
    decided = [(e.contact_id, e.type.value) for e in published]
    assert decided == [(c1, "queued"), (c1, "offered"), (c2, "queued"), (c2, "offered"), (c3, "queued")]
    assert all(r["topic"] == ROUTING_EVENTS for r in await outbox_rows(router.engine))
    assert [r["key"] for r in await outbox_rows(router.engine)] == [str(c) for c, _ in decided]
    async with router.engine.connect() as conn:
        history = (await conn.execute(select(routing_history).order_by(routing_history.c.id))).mappings().all()
        stored = (await conn.execute(select(messages).order_by(messages.c.received_at))).mappings().all()
        replay = await feed_store.since(conn, "alice", 0)
    assert [(h["contact_id"], h["type"]) for h in history] == decided
    assert [h["payload"] for h in history] == [r["payload"] for r in await outbox_rows(router.engine)]
    assert [h["occurred_at"] for h in history] == [e.occurred_at for e in published]
    assert [(m["id"], m["contact_id"], m["text"]) for m in stored] == [
        (first.event_id, c1, "你好"),
        (fetch[1].event_id, c2, "你好"),
        (fetch[2].event_id, c1, "still there?"),
        (fetch[3].event_id, c3, "你好"),
    ]
    assert stored[0]["attachments"] == [photo.model_dump(mode="json")]
    assert stored[0]["metadata"] == {"page": "/orders/42"}
    assert stored[0]["occurred_at"] == first.occurred_at
    assert replay == pushed  # ids in the order told, payloads as written
    ids = [item.id for item in replay] if isinstance(replay, list) else []
    assert ids == sorted(ids) and len(ids) == 2


async def test_an_accept_and_a_completion_write_their_late_rows_in_one_statement(router: Router) -> None:
    await events.on_contacts(router.service, [contact_event("c1")])
    (offer,) = router.service.state.offers.values()
    with Statements(router) as accepting:
        assignment = await commands.accept(router.service, offer.id, "alice")
    with Statements(router) as completing:
        await commands.complete(router.service, assignment.id, "alice", disposition="resolved")
    assert len(_touching(accepting, "outbox", "routing_history", "agent_feed")) == 1
    assert len(_touching(completing, "outbox", "routing_history", "agent_feed")) == 1
    types = [RoutingEvent.model_validate_json(r["payload"]).type.value for r in await outbox_rows(router.engine)]
    assert types == ["queued", "offered", "accepted", "assigned", "completed"]


async def test_a_new_customer_is_found_or_created_in_one_statement_and_once_in_a_fetch(router: Router) -> None:
    first = contact_event("c1")
    second = contact_event("c2").model_copy(update={"customer": first.customer})  # another conversation, same person
    with Statements(router) as sent:
        await events.on_contacts(router.service, [first, second])
    assert len(_touching(sent, "customer_identities")) == 2  # a statement a contact (SELECT, INSERT, SELECT before)
    async with router.engine.connect() as conn:
        owners = (await conn.execute(select(contacts.c.customer_id))).scalars().all()
        identities = (await conn.execute(select(customer_identities))).mappings().all()
        known = (await conn.execute(select(customers.c.id, customers.c.display_name))).all()
    assert len(owners) == 2 and len(set(owners)) == 1
    assert [(i["platform_id"], i["customer_id"]) for i in identities] == [(first.customer.platform_id, owners[0])]
    assert known == [(owners[0], first.customer.display_name)]
