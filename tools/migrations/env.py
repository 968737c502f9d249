"""Alembic environment: one migration history for the services' schemas (router, escalation)."""

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from kefu.db import create_engine
from kefu.tokens import metadata as tokens_metadata
from services.channels.common.orm import metadata as channels_metadata
from services.escalation.adapters.orm import metadata as escalation_metadata
from services.router.adapters.orm import metadata as router_metadata

target_metadata = [router_metadata, escalation_metadata, channels_metadata, tokens_metadata]
SCHEMAS = [m.schema for m in target_metadata]


def _run(connection: Connection) -> None:
    for schema in SCHEMAS:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=lambda name, type_, _parent: type_ != "schema" or name in SCHEMAS,
        version_table_schema="public",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


asyncio.run(_run_async(context.config.get_main_option("sqlalchemy.url") or ""))
