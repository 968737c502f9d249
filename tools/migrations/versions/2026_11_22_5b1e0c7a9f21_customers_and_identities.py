"""customers and their identities across channels

Revision ID: 5b1e0c7a9f21
Revises: 4d9f4132e1c5
Create Date: 2026-11-22 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b1e0c7a9f21"
down_revision: str | None = "4d9f4132e1c5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "external_id", sa.String(length=256), nullable=True, comment="the business's own id (e.g. a web chat login)"
        ),
        sa.Column("display_name", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("external_id", name=op.f("uq_customers_external_id")),
        schema="router",
    )
    op.create_table(
        "customer_identities",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("platform_id", sa.String(length=256), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["router.customers.id"], name=op.f("fk_customer_identities_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("channel", "platform_id", name=op.f("pk_customer_identities")),
        schema="router",
    )
    op.create_index(
        op.f("ix_router_customer_identities_customer_id"),
        "customer_identities",
        ["customer_id"],
        unique=False,
        schema="router",
    )
    op.alter_column("contacts", "customer_id", new_column_name="customer_platform_id", schema="router")
    op.add_column("contacts", sa.Column("customer_id", sa.UUID(), nullable=True), schema="router")
    op.create_index(op.f("ix_router_contacts_customer_id"), "contacts", ["customer_id"], unique=False, schema="router")
    op.create_foreign_key(
        op.f("fk_contacts_customer_id_customers"),
        "contacts",
        "customers",
        ["customer_id"],
        ["id"],
        source_schema="router",
        referent_schema="router",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_contacts_customer_id_customers"), "contacts", schema="router", type_="foreignkey")
    op.drop_index(op.f("ix_router_contacts_customer_id"), table_name="contacts", schema="router")
    op.drop_column("contacts", "customer_id", schema="router")
    op.alter_column("contacts", "customer_platform_id", new_column_name="customer_id", schema="router")
    op.drop_index(op.f("ix_router_customer_identities_customer_id"), table_name="customer_identities", schema="router")
    op.drop_table("customer_identities", schema="router")
    op.drop_table("customers", schema="router")
