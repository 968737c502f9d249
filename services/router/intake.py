"""A new contact's place: classified by the configuration's rules (queue, priority, category) and, with sticky
routing on, waiting a while for the agent who knows the customer.

Read inside the transaction that opens the contact, from the customer's profile and past assignments.
"""

from collections.abc import Mapping
from datetime import datetime, timedelta

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
    now: datetime,
) -> ContactRef:
    """The first message of a conversation as a contact of its customer (found, created or linked), placed and with
    the agent it waits for, if any: the customer, their profile and their last agent read in one statement."""
    sticky = config.sticky
    since = now - timedelta(minutes=sticky.window_minutes) if sticky is not None and sticky.wait_seconds > 0 else None
    customer = await customers.arrival(conn, event.channel, event.customer, since=since)
    profile = customer.profile
    placed = config.classify(
        channel=event.channel,
        account_id=event.account_id,
        text=event.message.text,
        tier=profile.tier,
        language=event.customer.language,
    )
    preferred, wait = _preference(config, agents, customer)
    return ContactRef(
        event.event_id,
        event.conversation_key,
        event.channel,
        placed.queue,
        placed.priority,
        now,
        preferred_agent=preferred,
        prefer_until=now + timedelta(seconds=wait) if preferred is not None else None,
        customer_id=customer.customer_id,
        tier=profile.tier.value,
        owning_tam=profile.owning_tam,
        category=placed.category,
    )


def _preference(
    config: RoutingConfig, agents: Mapping[str, Agent], customer: customers.Arrival
) -> tuple[str | None, float]:
    """The agent a new contact should wait for, and for how many seconds: a key account's owning TAM, else
    the agent of the customer's last assignment within the window; nobody when sticky routing is off."""
    sticky, profile = config.sticky, customer.profile
    if sticky is None:
        return None, 0.0
    key_account = profile.tier is CustomerTier.KEY_ACCOUNT and profile.owning_tam in agents
    if key_account and sticky.key_account_wait_seconds > 0:
        return profile.owning_tam, sticky.key_account_wait_seconds
    if sticky.wait_seconds > 0 and customer.last_agent in agents:
        return customer.last_agent, sticky.wait_seconds
    return None, 0.0
