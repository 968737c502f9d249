"""What the router's API answers, as pydantic models: the OpenAPI document shows every answer's schema, and an
answer that strays from its schema fails in the service instead of in a desktop.

The read side (``views``, ``queries``) builds these shapes as JSON-ready dicts; the routes declare the models as
their ``response_model``. Times stay the strings the views write (ISO 8601 with the offset, as stored), typed
``date-time`` in the document: a ``datetime`` field would write UTC as ``Z`` and change the answers.
"""

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts import Channel
from services.router.domain.config import CustomerTier
from services.router.domain.model import Presence

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class Answer(BaseModel):
    """An answer names every field it carries: a view that grows a field fails the tests until it is declared."""

    model_config = ConfigDict(extra="forbid")


class Agent(Answer):
    """An agent, its presence and its work now."""

    agent_id: str
    name: str
    groups: list[str]
    skills: dict[str, int] = Field(description="skill -> proficiency 1-5")
    capacity: dict[str, int] = Field(description="channel -> how many contacts at once")
    presence: Presence
    idle_since: Timestamp = Field(description="since when the agent has had no work (longest-idle routing)")
    load: dict[str, int] = Field(description="channel -> contacts offered or assigned now (channels with some)")
    wrap_up_until: Timestamp | None = Field(description="the end of the agent's wrap-up, while in it")
    missed_offers: int = Field(description="offers let expire in a row")


class ContactPlace(Answer):
    """Where a contact waits or is worked on."""

    contact_id: UUID
    conversation_key: str
    channel: Channel
    queue_id: str
    priority: int
    enqueued_at: Timestamp


class Assignment(ContactPlace):
    """An open assignment: an agent works on a contact."""

    assignment_id: UUID
    agent_id: str


class Offer(ContactPlace):
    """A pending offer: the agent may accept or decline it until it expires."""

    offer_id: UUID
    agent_id: str
    expires_at: Timestamp


class OfferDeclined(Answer):
    offer_id: UUID
    status: Literal["declined"]


class AssignmentCompleted(Answer):
    assignment_id: UUID
    status: Literal["completed"]


class Placement(Answer):
    """Where a moved or transferred contact is now, and the agent it waits for first, if any."""

    contact_id: UUID
    queue_id: str
    priority: int
    preferred_agent: str | None
    prefer_until: Timestamp | None


class Identity(Answer):
    channel: Channel
    platform_id: str


class CustomerContact(Answer):
    contact_id: UUID
    channel: Channel
    status: str = Field(description="queued, offered, assigned, completed, abandoned or closed")
    queue_id: str
    enqueued_at: Timestamp


class Customer(Answer):
    """A customer: profile, identities on every channel, and contacts, newest first."""

    customer_id: UUID
    external_id: str | None = Field(description="the business's own id (e.g. a web chat login)")
    display_name: str | None
    tier: CustomerTier
    owning_tam: str | None = Field(description="agent id of a key account's technical account manager")
    identities: list[Identity]
    contacts: list[CustomerContact]


class MessageView(Answer):
    message_id: UUID
    text: str
    attachments: list[dict[str, Any]]
    metadata: dict[str, str]
    occurred_at: Timestamp


class Contact(Answer):
    """A contact, every routing step it took and every message, oldest first."""

    contact_id: UUID
    conversation_key: str
    channel: Channel
    account_id: str
    customer_id: UUID | None
    customer_platform_id: str
    customer_name: str | None
    queue_id: str
    priority: int
    status: str = Field(description="queued, offered, assigned, completed, abandoned or closed")
    enqueued_at: Timestamp
    closed_at: Timestamp | None
    events: list[dict[str, Any]] = Field(
        description="its routing events as published on kefu.routing.events.v1 (RoutingEvent), fields without a "
        "value left out"
    )
    messages: list[MessageView]


class ChannelNow(Answer):
    """One channel of a queue now."""

    waiting: int
    offered: int
    unservable: int = Field(description="waiting contacts no agent, in any presence, can ever serve")
    agents_with_capacity: int
    available_agents: int
    free_slots: int


class Queue(Answer):
    """A queue: what waits in it now, and who could serve it."""

    queue_id: str
    name: str
    waiting: int
    offered: int
    unservable: int
    oldest_wait_seconds: float
    eligible_agents: dict[str, int] = Field(description="presence -> agents that may serve the queue")
    free_slots: int
    channels: dict[str, ChannelNow]


class ServiceLevel(Answer):
    answer_within_seconds: int
    percent: float | None = Field(description="answered within the threshold, of answered and abandoned")


class QueueStats(Queue):
    """A queue now, over a recent window, and the estimated wait of a new contact (none: unknown)."""

    window_minutes: int
    answered: int
    abandoned: int
    asa_seconds: float | None = Field(description="mean time to answer")
    service_level: ServiceLevel
    abandonment_percent: float | None
    aht_seconds: float | None = Field(description="mean handle time")
    estimated_wait_seconds: float | None


class ConfigVersion(Answer):
    """The routing configuration in force."""

    version: int
    source: str = Field(description="file (read at start) or api (PUT /v1/config)")
    applied_by: str
    applied_at: Timestamp
    yaml: str


class ConfigApplied(Answer):
    version: int
    warnings: list[str] = Field(description="field: what may not be what was meant (an unreachable queue…)")
