"""router applied_events: an index on applied_at, for pruning the ids applied longer ago than their retention

Revision ID: a9917e1d0007
Revises: 3e8b1d7c5a42
Create Date: 2026-11-30 23:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a9917e1d0007"
down_revision: str | None = "3e8b1d7c5a42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_router_applied_events_applied_at"), "applied_events", ["applied_at"], unique=False, schema="router"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_router_applied_events_applied_at"), table_name="applied_events", schema="router")
