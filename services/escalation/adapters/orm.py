"""The escalation service's records in PostgreSQL (schema ``escalation``)."""

from sqlalchemy import Column, DateTime, Index, String, Table, Text, text
from sqlalchemy.dialects.postgresql import UUID

from kefu.db import metadata as schema_metadata

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
