"""The escalation service's records in PostgreSQL (schema ``escalation``)."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from kefu.db import metadata as schema_metadata
from kefu.outbox import outbox_table

metadata = schema_metadata("escalation")

routing_events = Table(
    "routing_events",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True, comment="applied once: the key is the event id"),
    Column("type", String(32), nullable=False),
    Column("contact_id", UUID(as_uuid=True), nullable=False),
    Column("agent_id", String(128)),
    Column("queue_id", String(128), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("payload", Text, nullable=False),
    Index("ix_routing_events_contact", "contact_id", "occurred_at"),
)

timers = Table(
    "timers",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("key", String(512), nullable=False, unique=True, comment="idempotent scheduling: one timer per key"),
    Column("kind", String(64), nullable=False, comment="e.g. sla.first_response.warn, ack.level2"),
    Column("contact_id", UUID(as_uuid=True)),
    Column("case_id", UUID(as_uuid=True)),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False, server_default=text("'{}'")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("fired_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Index("ix_timers_due", "due_at", postgresql_where=text("fired_at IS NULL AND cancelled_at IS NULL")),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("message_id", String(128), nullable=False, unique=True, comment="webhook-id: stable across retries"),
    Column("target", String(128), nullable=False, comment="the configured notification target"),
    Column("url", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("delivered_at", DateTime(timezone=True)),
    Column("dead_at", DateTime(timezone=True), comment="gave up after the last retry: the dead-letter record"),
    Index(
        "ix_notifications_pending",
        "next_attempt_at",
        postgresql_where=text("delivered_at IS NULL AND dead_at IS NULL"),
    ),
)

cases = Table(
    "cases",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("contact_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("trigger", String(128), nullable=False, comment="what fired; one case per contact and trigger"),
    Column("target", String(64), nullable=False),
    Column("level", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False, comment="JSON: the message or timer that fired"),
    Column("created_by", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("contact_id", "trigger", name="uq_cases_contact_trigger"),
)

case_audit = Table(
    "case_audit",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("case_id", UUID(as_uuid=True), ForeignKey("cases.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(32), nullable=False),
    Column("detail", Text, nullable=False, server_default=text("''")),
)

contact_facts = Table(
    "contact_facts",
    metadata,
    Column("contact_id", UUID(as_uuid=True), primary_key=True, comment="the router's contact id"),
    Column("conversation_key", String(512), nullable=False, comment="maps later messages to the open contact"),
    Column("customer_key", String(300), comment="customer:<router id>, ext:<external id> or <channel>:<platform id>"),
    Column("queue", String(128), nullable=False, server_default=text("''"), comment="'' until the router queues it"),
    Column("tier", String(64), nullable=False, server_default=text("'standard'")),
    Column("status", String(32), nullable=False, server_default=text("'waiting'")),
    Column("owning_tam", String(128)),
    Column("category", String(128)),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("first_answered_at", DateTime(timezone=True)),
    Column("transfers", Integer, nullable=False, server_default=text("0")),
    Column("fired", ARRAY(String(128)), nullable=False, server_default=text("'{}'"), comment="triggers fired once"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("ix_contact_facts_conversation", "conversation_key"),
    Index("ix_contact_facts_customer", "customer_key", "queued_at"),
)

contact_messages = Table(
    "contact_messages",
    metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True, comment="applied once: the contact event's id"),
    Column("contact_id", UUID(as_uuid=True), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("text", Text, nullable=False),
    Column("from_customer", Boolean, nullable=False, server_default=text("true")),
    Index("ix_contact_messages_contact", "contact_id", "at"),
)

outbox = outbox_table(metadata)
