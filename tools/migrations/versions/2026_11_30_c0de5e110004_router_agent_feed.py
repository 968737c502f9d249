"""router agent feed: what each desktop was sent, for Last-Event-ID

Revision ID: c0de5e110004
Revises: c0de5e110003
Create Date: 2026-11-30 17:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c0de5e110004"
down_revision: str | None = "c0de5e110003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_feed",
        sa.Column(
            "id", sa.BigInteger(), autoincrement=True, nullable=False, comment="the SSE event id (Last-Event-ID)"
        ),
        sa.Column("agent_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False, comment="the SSE event name, e.g. offer.created"),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_feed")),
        schema="router",
        comment="what each agent's desktop was sent, so a desktop that reconnects gets what it missed",
    )
    op.create_index("ix_agent_feed_agent_id_id", "agent_feed", ["agent_id", "id"], unique=False, schema="router")
    op.create_index(
        op.f("ix_router_agent_feed_created_at"), "agent_feed", ["created_at"], unique=False, schema="router"
    )
    op.create_table(
        "agent_feed_horizons",
        sa.Column("agent_id", sa.String(length=128), nullable=False),
        sa.Column(
            "pruned_through",
            sa.BigInteger(),
            nullable=False,
            comment="the newest of the agent's feed items deleted",
        ),
        sa.PrimaryKeyConstraint("agent_id", name=op.f("pk_agent_feed_horizons")),
        schema="router",
    )


def downgrade() -> None:
    op.drop_table("agent_feed_horizons", schema="router")
    op.drop_index(op.f("ix_router_agent_feed_created_at"), table_name="agent_feed", schema="router")
    op.drop_index("ix_agent_feed_agent_id_id", table_name="agent_feed", schema="router")
    op.drop_table("agent_feed", schema="router")
