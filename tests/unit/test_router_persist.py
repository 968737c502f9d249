"""``repository.persist``'s statements, in order, for the decisions of one event (no database: a connection that
records what it is asked to run): a new contact's row comes before its first change, and only an arrival offered at
once, or an offer accepted with its assignment, is one statement for two decisions."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import Channel
from services.router.adapters import repository
from services.router.domain.decisions import (
    Assigned,
    Closed,
    Decision,
    Enqueued,
    OfferClosed,
    Offered,
    OfferOutcome,
    Requeued,
)
from services.router.domain.model import ContactRef

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONTACT = ContactRef(uuid.uuid4(), "webchat:demo:1", Channel.WEBCHAT, "presales", 10, NOW)
OTHER = ContactRef(uuid.uuid4(), "webchat:demo:2", Channel.WEBCHAT, "presales", 10, NOW)
ROW = {"id": CONTACT.id, "queue_id": CONTACT.queue_id}


class Recording:
    """A connection that runs nothing: the statements it was asked to run, with their parameters."""

    def __init__(self) -> None:
        self.ran: list[tuple[Any, dict[str, Any]]] = []

    async def execute(self, statement: Any, parameters: dict[str, Any]) -> None:
        self.ran.append((statement, parameters))


async def _persisted(decisions: list[Decision], opened: dict[str, Any] | None = ROW) -> tuple[list[Any], list[str]]:
    conn = Recording()
    published = await repository.persist(cast(AsyncConnection, conn), decisions, opened)
    statuses = [params.get("status") for statement, params in conn.ran if statement is repository._OPENED]
    assert statuses in ([], ["queued"])
    return [statement for statement, _ in conn.ran], [e.type.value for e in published]


def _offered(contact: ContactRef = CONTACT) -> Offered:
    return Offered(uuid.uuid4(), contact, "alice", NOW, NOW + timedelta(seconds=30))


async def test_an_arrival_offered_at_once_is_one_statement() -> None:
    ran, told = await _persisted([Enqueued(CONTACT), _offered()])
    assert ran == [repository._OPENED_OFFERED]
    assert told == ["queued", "offered"]


async def test_an_arrival_otherwise_writes_its_row_before_its_first_change() -> None:
    assert await _persisted([Enqueued(CONTACT)]) == ([repository._OPENED], ["queued"])
    closed = Closed(CONTACT, "after hours", NOW)  # a queue closed after hours closes it
    assert await _persisted([closed]) == ([repository._OPENED, repository._CONTACT], ["closed"])
    moved = Requeued(CONTACT, OTHER, "overflow", NOW)  # an overflow moves it before it is offered
    ran, told = await _persisted([Enqueued(CONTACT), moved, _offered()])
    assert ran == [repository._OPENED, repository._CONTACT, repository._OFFERED]
    assert told == ["queued", "requeued", "offered"]
    ran, _ = await _persisted([Enqueued(CONTACT), _offered(OTHER)])  # another contact's offer
    assert ran == [repository._OPENED, repository._OFFERED]


async def test_only_an_accepted_offer_is_written_with_the_assignment_made_of_it() -> None:
    offer = _offered()
    accepted = OfferClosed(offer.offer_id, CONTACT, "alice", OfferOutcome.ACCEPTED, NOW)
    assigned = Assigned(uuid.uuid4(), offer.offer_id, CONTACT, "alice", NOW)
    assert await _persisted([accepted, assigned], None) == (
        [repository._ACCEPTED_ASSIGNED],
        ["accepted", "assigned"],
    )
    declined = OfferClosed(offer.offer_id, CONTACT, "alice", OfferOutcome.DECLINED, NOW)
    ran, told = await _persisted([declined, assigned], None)
    assert ran == [repository._CLOSED_OFFER[OfferOutcome.DECLINED], repository._ASSIGNED]
    assert told == ["declined", "assigned"]
    elsewhere = Assigned(uuid.uuid4(), uuid.uuid4(), OTHER, "bob", NOW)  # another offer's assignment
    ran, _ = await _persisted([accepted, elsewhere], None)
    assert ran == [repository._CLOSED_OFFER[OfferOutcome.ACCEPTED], repository._ASSIGNED]
    ran, _ = await _persisted([accepted], None)
    assert ran == [repository._CLOSED_OFFER[OfferOutcome.ACCEPTED]]
