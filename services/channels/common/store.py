"""Replay protection and pull cursors, shared by every instance through PostgreSQL.

A replay token is kept until it expires and is then forgotten by ``purging_replay_tokens``, which every instance
runs while it serves (``KEFU_REPLAY_PURGE_INTERVAL_SECONDS``): without it the table would only grow.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.channels.common.orm import cursors, replay_tokens

log = logging.getLogger(__name__)


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


@contextlib.asynccontextmanager
async def purging_replay_tokens(engine: AsyncEngine, *, every: float) -> AsyncIterator[None]:
    """Purge expired replay tokens every ``every`` seconds for as long as the context lasts."""
    task = asyncio.create_task(_purge_forever(engine, every), name="replay-token-purge")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _purge_forever(engine: AsyncEngine, every: float) -> None:
    """A failed purge is only logged: the tokens it missed go the next time, and webhooks do not depend on it."""
    while True:
        await asyncio.sleep(every)
        try:
            purged = await purge_expired(engine)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not purge expired replay tokens: %s", type(exc).__name__)
        else:
            log.debug("purged %d expired replay tokens", purged)


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
