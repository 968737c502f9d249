"""A new contact's place: classified by the configuration's rules (queue, priority, category) and, with sticky
routing on, waiting a while for the agent who knows the customer.

Read inside the transaction that opens the contact, from the customer's profile and past assignments.
"""

from collections.abc import Mapping
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import ContactEvent
from services.router.adapters import customers
from services.router.domain.config import CustomerTier, RoutingConfig
from services.router.domain.model import Agent, ContactRef


async def new_contact(
    conn: AsyncConnection,
    config: RoutingConfig,
    agents: Mapping[str, Agent],
    event: ContactEvent,
    customer_id: UUID,
    now: datetime,
) -> ContactRef:
    """The first message of a conversation as a contact, placed and with the agent it waits for, if any."""
    profile = await customers.profile(conn, customer_id)
    placed = config.classify(
        channel=event.channel,
        account_id=event.account_id,
        text=event.message.text,
        tier=profile.tier,
        language=event.customer.language,
    )
    preferred, wait = await _preference(conn, config, agents, customer_id, profile, now)
    return ContactRef(
        event.event_id,
        event.conversation_key,
        event.channel,
        placed.queue,
        placed.priority,
        now,
        preferred_agent=preferred,
        prefer_until=now + timedelta(seconds=wait) if preferred is not None else None,
        customer_id=customer_id,
        tier=profile.tier.value,
        owning_tam=profile.owning_tam,
        category=placed.category,
    )


async def _preference(
    conn: AsyncConnection,
    config: RoutingConfig,
    agents: Mapping[str, Agent],
    customer_id: UUID,
    profile: customers.Profile,
    now: datetime,
) -> tuple[str | None, float]:
    """The agent a new contact should wait for, and for how many seconds: a key account's owning TAM, else
    the agent of the customer's last assignment within the window; nobody when sticky routing is off."""
    sticky = config.sticky
    if sticky is None:
        return None, 0.0
    key_account = profile.tier is CustomerTier.KEY_ACCOUNT and profile.owning_tam in agents
    if key_account and sticky.key_account_wait_seconds > 0:
        return profile.owning_tam, sticky.key_account_wait_seconds
    if sticky.wait_seconds > 0:
        since = now - timedelta(minutes=sticky.window_minutes)
        last = await customers.last_agent(conn, customer_id, since=since)
        if last in agents:
            return last, sticky.wait_seconds
    return None, 0.0
