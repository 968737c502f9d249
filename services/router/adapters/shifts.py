"""Agents' shifts as stored with the agents (from the configuration file or ``PUT /v1/agents/{id}``)."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.router.adapters.orm import agents


async def stored(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    """Agent id -> its shift as stored (JSON), for every agent that has one."""
    rows = await conn.execute(select(agents.c.id, agents.c.shift))
    return {row.id: row.shift for row in rows if row.shift is not None}
