"""The router's durable truth in PostgreSQL (schema ``router``)."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from kefu.db import metadata as schema_metadata
from kefu.outbox import outbox_table

metadata = schema_metadata("router")

agents = Table(
    "agents",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("groups", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("skills", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("capacity", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("presence", String(16), nullable=False),
    Column("presence_since", DateTime(timezone=True), nullable=False),
    Column("idle_since", DateTime(timezone=True), nullable=False),
    Column("missed_offers", Integer, nullable=False, server_default=text("0"), comment="offers let expire in a row"),
    Column("busy_until", DateTime(timezone=True), comment="end of wrap-up: no new offer before"),
    Column("phone_exclusive", Boolean, nullable=False, server_default=text("false")),
    Column("wrap_up_seconds", Float, nullable=False, server_default=text("0")),
    Column("max_missed_offers", Integer, comment="set away after this many expired offers in a row"),
    Column("shift", JSONB, comment="weekly schedule that sets presence; none: presence is set by hand"),
)

customers = Table(
    "customers",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("external_id", String(256), unique=True, comment="the business's own id (e.g. a web chat login)"),
    Column("display_name", String(256)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("tier", String(32), nullable=False, server_default=text("'standard'"), comment="standard, vip, key_account"),
    Column("owning_tam", String(128), comment="agent id of a key account's technical account manager"),
)

customer_identities = Table(
    "customer_identities",
    metadata,
    Column("channel", String(16), primary_key=True),
    Column("platform_id", String(256), primary_key=True),
    Column("customer_id", UUID(as_uuid=True), ForeignKey("customers.id"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("conversation_key", String(512), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("account_id", String(128), nullable=False),
    Column("customer_platform_id", String(256), nullable=False),
    Column("customer_id", UUID(as_uuid=True), ForeignKey("customers.id"), index=True),
    Column("customer_name", String(256)),
    Column("queue_id", String(128), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("preferred_agent", String(128), comment="sticky routing: waits for this agent until prefer_until"),
    Column("prefer_until", DateTime(timezone=True)),
    Column("queued_at", DateTime(timezone=True), comment="when it entered its current queue, if moved"),
    Column("tier", String(32)),
    Column("owning_tam", String(128)),
    Column("category", String(128), comment="the classification rule that placed it"),
    Index(
        "uq_contacts_open_conversation",
        "conversation_key",
        unique=True,
        postgresql_where=text("status IN ('queued', 'offered', 'assigned')"),
    ),
)

messages = Table(
    "messages",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, comment="the contact event id"),
    Column("contact_id", UUID(as_uuid=True), ForeignKey("contacts.id"), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("attachments", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

offers = Table(
    "offers",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("contact_id", UUID(as_uuid=True), ForeignKey("contacts.id"), nullable=False, index=True),
    Column("agent_id", String(128), ForeignKey("agents.id"), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
)

assignments = Table(
    "assignments",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("contact_id", UUID(as_uuid=True), ForeignKey("contacts.id"), nullable=False, index=True),
    Column("agent_id", String(128), ForeignKey("agents.id"), nullable=False, index=True),
    Column("offer_id", UUID(as_uuid=True), ForeignKey("offers.id"), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    Column("disposition", String(128), comment="what the agent recorded on completion, or transferred"),
    Column("resolved", Boolean, comment="first-contact resolution as the agent recorded it"),
)

applied_events = Table(
    "applied_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("topic", String(255), nullable=False),
    Column(
        "applied_at", DateTime(timezone=True), nullable=False, server_default=text("now()"), index=True
    ),  # pruned after kefu.applied's retention
)

outbox = outbox_table(metadata)

routing_history = Table(
    "routing_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True, comment="the order the events were decided in"),
    Column("contact_id", UUID(as_uuid=True), nullable=False),
    Column("type", String(32), nullable=False, comment="the routing event's type: queued, offered, assigned…"),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False, comment="the routing event as published (JSON)"),
    Index("ix_routing_history_contact_id_id", "contact_id", "id"),
    comment="every routing event of every contact, for its timeline: written with the decision, kept after the "
    "outbox row that published it is pruned",
)

config_versions = Table(
    "config_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("source", String(16), nullable=False, comment="file (read at start) or api (PUT /v1/config)"),
    Column("sha256", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("applied_by", String(256), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

agent_feed = Table(
    "agent_feed",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True, comment="the SSE event id (Last-Event-ID)"),
    Column("agent_id", String(128), nullable=False),
    Column("name", String(64), nullable=False, comment="the SSE event name, e.g. offer.created"),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()"), index=True),
    Index("ix_agent_feed_agent_id_id", "agent_id", "id"),
    comment="what each agent's desktop was sent, so a desktop that reconnects gets what it missed",
)

agent_feed_horizons = Table(
    "agent_feed_horizons",
    metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("pruned_through", BigInteger, nullable=False, comment="the newest of the agent's feed items deleted"),
)
