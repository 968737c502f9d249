"""router canonical identities: stored identities in the form contact events now carry

Identities linked by hand were stored as written (``+86 138 0013 8000``), so the caller's next call
(``+8613800138000``) made another customer. Every phone, e-mail, WeChat and Douyin identity is
rewritten in the canonical form of ``contracts.identities``; where that form is already another
identity, the two are one person: the rewritten identity's customer absorbs the other customer (its
identities and contacts), as a manual link would have done. Identities that are no valid identity
of their channel are left as they are (the API refuses such links from now on).

Revision ID: c0de5e110006
Revises: c0de5e110004
Create Date: 2026-11-30 18:45:00.000000
"""

import logging
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from contracts import Channel, identities

revision: str = "c0de5e110006"
down_revision: str | None = "c0de5e110004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

CHANNELS = ("phone", "email", "wechat", "douyin")

# the tables as this revision knows them, not as the models may later describe them
_identities = sa.table(
    "customer_identities",
    sa.column("channel", sa.String),
    sa.column("platform_id", sa.String),
    sa.column("customer_id", sa.Uuid),
    schema="router",
)
_customers = sa.table("customers", sa.column("id", sa.Uuid), sa.column("external_id", sa.String), schema="router")
_contacts = sa.table("contacts", sa.column("customer_id", sa.Uuid), schema="router")


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_identities.c.channel, _identities.c.platform_id).where(_identities.c.channel.in_(CHANNELS))
    ).all()
    rewritten = merged = 0
    for channel, platform_id in rows:
        try:
            canonical = identities.canonical(Channel(channel), platform_id)
        except identities.InvalidIdentity:
            continue
        if canonical == platform_id:
            continue
        # owners are read now, not with the rows: an earlier merge may have moved either identity
        owner, other = _owner(conn, channel, platform_id), _owner(conn, channel, canonical)
        row = (_identities.c.channel == channel) & (_identities.c.platform_id == platform_id)
        if other is None:
            conn.execute(sa.update(_identities).where(row).values(platform_id=canonical))
        else:
            conn.execute(sa.delete(_identities).where(row))
            if other != owner:
                _merge(conn, source=other, target=owner)
                merged += 1
        rewritten += 1
    if rewritten:
        log.info("canonical identities: %d rewritten, %d customers merged", rewritten, merged)


def downgrade() -> None:
    """Nothing to undo: older code reads canonical identities as well, and the forms as written are gone."""


def _owner(conn: sa.Connection, channel: str, platform_id: str) -> uuid.UUID | None:
    found: uuid.UUID | None = conn.execute(
        sa.select(_identities.c.customer_id).where(
            _identities.c.channel == channel, _identities.c.platform_id == platform_id
        )
    ).scalar_one_or_none()
    return found


def _merge(conn: sa.Connection, *, source: uuid.UUID | None, target: uuid.UUID | None) -> None:
    """Fold customer ``source`` into ``target`` as ``services.router.adapters.customers.merge`` does at run time."""
    external_id = conn.execute(
        sa.select(_customers.c.external_id).where(_customers.c.id == source)
    ).scalar_one_or_none()
    conn.execute(sa.update(_identities).where(_identities.c.customer_id == source).values(customer_id=target))
    conn.execute(sa.update(_contacts).where(_contacts.c.customer_id == source).values(customer_id=target))
    conn.execute(sa.delete(_customers).where(_customers.c.id == source))
    if external_id is not None:
        conn.execute(
            sa.update(_customers)
            .where(_customers.c.id == target, _customers.c.external_id.is_(None))
            .values(external_id=external_id)
        )
