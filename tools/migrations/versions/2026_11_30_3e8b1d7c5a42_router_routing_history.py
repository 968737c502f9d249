"""router routing history: the timeline's own table, so the outboxes can be pruned

A contact's routing timeline was read from the router's outbox, which therefore could never be pruned. The routing
events get a table of their own (``router.routing_history``), written in the transaction of the decision; the
events already in the outbox are copied into it, in their order. Both outboxes (router and escalation) get an index
on ``published_at`` for the relay's prune of published rows.

Downgrading drops the history: the timeline then shows what the outbox still holds.

Revision ID: 3e8b1d7c5a42
Revises: 7a0c4e2b9d31
Create Date: 2026-11-30 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3e8b1d7c5a42"
down_revision: str | None = "7a0c4e2b9d31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROUTING_EVENTS = "kefu.routing.events.v1"  # as it was at this revision (contracts.ROUTING_EVENTS)
OUTBOX_SCHEMAS = ("router", "escalation")


def upgrade() -> None:
    op.create_table(
        "routing_history",
        sa.Column(
            "id", sa.BigInteger(), autoincrement=True, nullable=False, comment="the order the events were decided in"
        ),
        sa.Column("contact_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "type", sa.String(length=32), nullable=False, comment="the routing event's type: queued, offered, assigned…"
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False, comment="the routing event as published (JSON)"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_history")),
        schema="router",
        comment="every routing event of every contact, for its timeline: written with the decision, kept after the "
        "outbox row that published it is pruned",
    )
    op.create_index(
        "ix_routing_history_contact_id_id", "routing_history", ["contact_id", "id"], unique=False, schema="router"
    )
    # json, not jsonb: a payload may carry an escaped NUL, which jsonb refuses; only type and occurred_at are read
    op.execute(
        sa.text(
            "INSERT INTO router.routing_history (contact_id, type, occurred_at, payload) "
            "SELECT CAST(key AS uuid), payload::json->>'type', CAST(payload::json->>'occurred_at' AS timestamptz), "
            "payload FROM router.outbox WHERE topic = :topic ORDER BY id"
        ).bindparams(topic=ROUTING_EVENTS)
    )
    for schema in OUTBOX_SCHEMAS:
        op.create_index(
            "ix_outbox_published_at",
            "outbox",
            ["published_at"],
            unique=False,
            schema=schema,
            postgresql_where=sa.text("published_at IS NOT NULL"),
        )


def downgrade() -> None:
    for schema in OUTBOX_SCHEMAS:
        op.drop_index(
            "ix_outbox_published_at",
            table_name="outbox",
            schema=schema,
            postgresql_where=sa.text("published_at IS NOT NULL"),
        )
    op.drop_index("ix_routing_history_contact_id_id", table_name="routing_history", schema="router")
    op.drop_table("routing_history", schema="router")
