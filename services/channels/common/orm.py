"""The channel adapters' little state in PostgreSQL (schema ``channels``): replay tokens and pull cursors.

Adapters are otherwise stateless and scale horizontally; these tables make replay protection and
cursor-based pulls correct across instances.
"""

from sqlalchemy import Column, DateTime, String, Table, Text, text

from kefu.db import metadata as schema_metadata

metadata = schema_metadata("channels")

replay_tokens = Table(
    "replay_tokens",
    metadata,
    Column("scope", String(128), primary_key=True, comment="e.g. mailgun:<inbox>"),
    Column("token", String(512), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

cursors = Table(
    "cursors",
    metadata,
    Column("scope", String(255), primary_key=True, comment="e.g. wecom-kf:<corp>:<open_kfid>"),
    Column("cursor", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)
