"""Replay protection and pull cursors, shared by every instance through PostgreSQL."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.channels.common.orm import cursors, replay_tokens


async def first_use(engine: AsyncEngine, *, scope: str, token: str, ttl: timedelta) -> bool:
    """Record ``token`` in ``scope``; False if it was already used and has not expired (a replay)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            delete(replay_tokens).where(
                replay_tokens.c.scope == scope, replay_tokens.c.token == token, replay_tokens.c.expires_at < now
            )
        )
        result = await conn.execute(
            insert(replay_tokens)
            .values(scope=scope, token=token, expires_at=now + ttl)
            .on_conflict_do_nothing()
            .returning(replay_tokens.c.token)
        )
        return result.first() is not None


async def purge_expired(engine: AsyncEngine) -> int:
    """Forget expired replay tokens; return how many."""
    async with engine.begin() as conn:
        result = await conn.execute(delete(replay_tokens).where(replay_tokens.c.expires_at < func.now()))
        return result.rowcount or 0


async def load_cursor(engine: AsyncEngine, scope: str) -> str | None:
    """The saved cursor of ``scope``, if any."""
    async with engine.connect() as conn:
        value = (await conn.execute(select(cursors.c.cursor).where(cursors.c.scope == scope))).scalar_one_or_none()
        return str(value) if value is not None else None


async def save_cursor(engine: AsyncEngine, scope: str, cursor: str) -> None:
    """Remember where the pull of ``scope`` got to."""
    statement = insert(cursors).values(scope=scope, cursor=cursor)
    async with engine.begin() as conn:
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[cursors.c.scope], set_={"cursor": statement.excluded.cursor, "updated_at": func.now()}
            )
        )
