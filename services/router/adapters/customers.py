"""Customers: every platform identity (visitor id, OpenID, e-mail address, phone number…) maps to one
customer record, and identities can be linked, so that one person is one customer across channels.

Identities sharing the business's own id (``external_id``, e.g. a web chat login) are linked on
arrival; ``link`` joins any two by hand. Linking merges the two customers' identities and contacts.
Identities are kept in the canonical form of ``contracts.identities`` (E.164 numbers, normalized
e-mail addresses), which the channel adapters send and the API links.
"""

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import Channel, Customer, identities
from services.router.adapters.orm import assignments, contacts, customer_identities, customers
from services.router.domain.config import CustomerTier


class Profile(NamedTuple):
    """What routing knows of a customer beyond their identities."""

    tier: CustomerTier
    owning_tam: str | None


# the arrival path's statements, built once (their cache keys too): each call only binds its values
_identities = customer_identities.c
_IDENTITY = select(_identities.customer_id).where(
    _identities.channel == bindparam("b_channel"), _identities.platform_id == bindparam("b_platform")
)
_BY_EXTERNAL_ID = select(customers.c.id).where(customers.c.external_id == bindparam("b_external"))
_INSERT_IDENTITY = insert(customer_identities)
_INSERT_CUSTOMER = insert(customers)


def _last_agent(customer: str, since: str) -> str:
    """The agent of ``customer``'s latest assignment (on any of their channels) still open or ended after ``since``
    (a parameter; NULL: not looked for), as a scalar subquery: the one a returning customer is likely to want
    again."""
    return (
        f"(SELECT a.agent_id FROM {assignments.fullname} a JOIN {contacts.fullname} c "  # noqa: S608  # names
        f"ON c.id = a.contact_id WHERE c.customer_id = {customer} AND {since}::timestamptz IS NOT NULL "
        f"AND (a.completed_at IS NULL OR a.completed_at >= {since}::timestamptz) "
        "ORDER BY a.completed_at DESC NULLS FIRST, a.assigned_at DESC LIMIT 1)"
    )


# A customer by an identity without the business's own id, in one statement: the identity's, else a new customer
# with the identity (two new contacts of one customer in a transaction: the second finds the first's; two
# transactions at once: the second's identity conflicts, it fails and goes again, finding the first's); with their
# profile and, from $5 on, their last agent (a new customer's: the defaults, and nobody).
_ARRIVAL = (
    "WITH found AS (SELECT i.customer_id, c.tier, c.owning_tam "  # noqa: S608  # the tables' names
    f"FROM {customer_identities.fullname} i JOIN {customers.fullname} c ON c.id = i.customer_id "
    "WHERE i.channel = $1::text AND i.platform_id = $2::text), "
    f"created AS (INSERT INTO {customers.fullname} (id, display_name) SELECT $3::uuid, $4::text "
    "WHERE NOT EXISTS (SELECT FROM found) RETURNING id, tier, owning_tam), "
    f"linked AS (INSERT INTO {customer_identities.fullname} (channel, platform_id, customer_id) "
    "SELECT $1::text, $2::text, id FROM created) "
    f"SELECT customer_id, tier, owning_tam, {_last_agent('found.customer_id', '$5')} FROM found "
    "UNION ALL SELECT id, tier, owning_tam, NULL FROM created"
)
# the same of a customer already resolved (an identity with the business's own id: found, created or linked first)
_KNOWN = (
    f"SELECT k.id, k.tier, k.owning_tam, {_last_agent('k.id', '$2')} "  # noqa: S608  # the tables' names
    f"FROM {customers.fullname} k WHERE k.id = $1::uuid"
)


class Arrival(NamedTuple):
    """A new contact's customer as routing places the contact: who, their profile, and their last agent (None:
    nobody since the time asked for, or not asked)."""

    customer_id: uuid.UUID
    profile: Profile
    last_agent: str | None


async def arrival(conn: AsyncConnection, channel: Channel, customer: Customer, *, since: datetime | None) -> Arrival:
    """The customer behind ``customer``'s identity on ``channel`` (as ``resolve``), with their profile and the agent
    of their latest assignment still open or ended after ``since`` (None: not looked for); one statement for an
    identity without the business's own id."""
    platform_id = _canonical(channel, customer.platform_id)
    row: Any  # (customer id, tier, owning TAM, last agent)
    if not customer.external_id:
        row = (await conn.exec_driver_sql(_ARRIVAL, _found_or_new(channel, platform_id, customer, since))).one()
    else:
        customer_id = await _linked(conn, channel, platform_id, customer.external_id, customer)
        row = (await conn.exec_driver_sql(_KNOWN, (customer_id, since))).one()
    return Arrival(row[0], Profile(CustomerTier(row[1]), row[2]), row[3])


async def resolve(conn: AsyncConnection, channel: Channel, customer: Customer) -> uuid.UUID:
    """The customer behind ``customer``'s identity on ``channel``, created or linked as needed."""
    platform_id = _canonical(channel, customer.platform_id)
    if not customer.external_id:
        found = await conn.exec_driver_sql(_ARRIVAL, _found_or_new(channel, platform_id, customer, None))
        customer_id: uuid.UUID = found.scalar_one()
        return customer_id
    return await _linked(conn, channel, platform_id, customer.external_id, customer)


def _found_or_new(
    channel: Channel, platform_id: str, customer: Customer, since: datetime | None
) -> tuple[str, str, uuid.UUID, str | None, datetime | None]:
    """``_ARRIVAL``'s parameters."""
    return channel.value, platform_id, uuid.uuid4(), customer.display_name, since


async def _linked(
    conn: AsyncConnection, channel: Channel, platform_id: str, external_id: str, customer: Customer
) -> uuid.UUID:
    """The customer of an identity with the business's own id: the identity's (given that id, or merged into the
    customer who has it), else the one with that id, else a new one."""
    found = await conn.execute(_IDENTITY, {"b_channel": channel.value, "b_platform": platform_id})
    current: uuid.UUID | None = found.scalar_one_or_none()
    owner = await _by_external_id(conn, external_id)
    if current is None:
        customer_id = owner or await _create(conn, customer)
        identity = {"channel": channel.value, "platform_id": platform_id, "customer_id": customer_id}
        await conn.execute(_INSERT_IDENTITY, identity)
        return customer_id
    if owner is None:
        await conn.execute(
            update(customers)
            .where(customers.c.id == current, customers.c.external_id.is_(None))
            .values(external_id=external_id)
        )
    elif owner != current:
        await merge(conn, source=current, target=owner)
        return owner
    return current


async def link(conn: AsyncConnection, customer_id: uuid.UUID, channel: Channel, platform_id: str) -> None:
    """Make the identity ``channel``/``platform_id`` (and everything its customer had) ``customer_id``'s."""
    current = (
        await conn.execute(
            select(customer_identities.c.customer_id).where(
                customer_identities.c.channel == channel.value, customer_identities.c.platform_id == platform_id
            )
        )
    ).scalar_one_or_none()
    if current is None:
        await conn.execute(
            insert(customer_identities).values(channel=channel.value, platform_id=platform_id, customer_id=customer_id)
        )
    elif current != customer_id:
        await merge(conn, source=current, target=customer_id)


async def merge(conn: AsyncConnection, *, source: uuid.UUID, target: uuid.UUID) -> None:
    """Fold customer ``source`` into ``target``: identities and contacts move, ``source`` goes."""
    external_id = (
        await conn.execute(select(customers.c.external_id).where(customers.c.id == source))
    ).scalar_one_or_none()
    await conn.execute(
        update(customer_identities).where(customer_identities.c.customer_id == source).values(customer_id=target)
    )
    await conn.execute(update(contacts).where(contacts.c.customer_id == source).values(customer_id=target))
    await conn.execute(delete(customers).where(customers.c.id == source))
    if external_id:
        await conn.execute(
            update(customers)
            .where(customers.c.id == target, customers.c.external_id.is_(None))
            .values(external_id=external_id)
        )


async def exists(conn: AsyncConnection, customer_id: uuid.UUID) -> bool:
    found = await conn.execute(select(customers.c.id).where(customers.c.id == customer_id))
    return found.first() is not None


async def view(conn: AsyncConnection, customer_id: uuid.UUID) -> dict[str, Any] | None:
    """The customer with their identities and contacts, newest contact first."""
    row = (await conn.execute(select(customers).where(customers.c.id == customer_id))).mappings().first()
    if row is None:
        return None
    identities = await conn.execute(
        select(customer_identities.c.channel, customer_identities.c.platform_id)
        .where(customer_identities.c.customer_id == customer_id)
        .order_by(customer_identities.c.created_at)
    )
    history = await conn.execute(
        select(contacts.c.id, contacts.c.channel, contacts.c.status, contacts.c.queue_id, contacts.c.enqueued_at)
        .where(contacts.c.customer_id == customer_id)
        .order_by(contacts.c.enqueued_at.desc())
    )
    return {
        "customer_id": str(row["id"]),
        "external_id": row["external_id"],
        "display_name": row["display_name"],
        "tier": row["tier"],
        "owning_tam": row["owning_tam"],
        "identities": [{"channel": i.channel, "platform_id": i.platform_id} for i in identities],
        "contacts": [
            {
                "contact_id": str(c.id),
                "channel": c.channel,
                "status": c.status,
                "queue_id": c.queue_id,
                "enqueued_at": c.enqueued_at.isoformat(),
            }
            for c in history
        ],
    }


async def set_profile(conn: AsyncConnection, customer_id: uuid.UUID, new: Profile) -> bool:
    """Set the customer's tier and owning TAM; False if there is no such customer."""
    result = await conn.execute(
        update(customers)
        .where(customers.c.id == customer_id)
        .values(tier=new.tier.value, owning_tam=new.owning_tam)
        .returning(customers.c.id)
    )
    return result.first() is not None


def _canonical(channel: Channel, platform_id: str) -> str:
    """The identity as the adapters send it today: events published before they canonicalized it (or by another
    producer) still find their customer. One the channel would refuse is kept as sent: the contact is not lost."""
    try:
        return identities.canonical(channel, platform_id)
    except identities.InvalidIdentity:
        return platform_id


async def _by_external_id(conn: AsyncConnection, external_id: str) -> uuid.UUID | None:
    found = await conn.execute(_BY_EXTERNAL_ID, {"b_external": external_id})
    value = found.scalar_one_or_none()
    return uuid.UUID(str(value)) if value is not None else None


async def _create(conn: AsyncConnection, customer: Customer) -> uuid.UUID:
    customer_id = uuid.uuid4()
    row = {"id": customer_id, "external_id": customer.external_id, "display_name": customer.display_name}
    await conn.execute(_INSERT_CUSTOMER, row)
    return customer_id
