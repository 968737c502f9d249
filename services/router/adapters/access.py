"""Who may read a contact or a customer (``kefu.auth.require_reader``): the agents that hold or held an assignment,
or have an open offer, of it — for a customer, of any of its contacts."""

from uuid import UUID

from sqlalchemy import ColumnElement, select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from services.router.adapters.orm import assignments, contacts, offers


async def contact_readers(conn: AsyncConnection, contact_id: UUID) -> set[str]:
    """The agents that may read contact ``contact_id``."""
    return await _readers(conn, assignments.c.contact_id == contact_id, offers.c.contact_id == contact_id)


async def customer_readers(conn: AsyncConnection, customer_id: UUID) -> set[str]:
    """The agents that may read customer ``customer_id``: through any of its contacts."""
    theirs = select(contacts.c.id).where(contacts.c.customer_id == customer_id)
    return await _readers(conn, assignments.c.contact_id.in_(theirs), offers.c.contact_id.in_(theirs))


async def offer_holder(conn: AsyncConnection, offer_id: UUID) -> tuple[str, str] | None:
    """The agent an offer was made to, and its status; None for an offer never made."""
    row = (await conn.execute(select(offers.c.agent_id, offers.c.status).where(offers.c.id == offer_id))).first()
    return None if row is None else (row.agent_id, row.status)


async def _readers(conn: AsyncConnection, assigned: ColumnElement[bool], offered: ColumnElement[bool]) -> set[str]:
    query = union(
        select(assignments.c.agent_id).where(assigned),
        select(offers.c.agent_id).where(offered, offers.c.status == "pending"),
    )
    return set((await conn.execute(query)).scalars())
