"""The desktop feed in PostgreSQL: items written with the routing change that causes them (``late_writes``), read
back by id.

Ids come from one sequence and every write happens under the routing service's lock, so an agent's items commit
in id order: reading ``id > last seen`` never skips one that commits later. Items older than the retention window
are pruned; the newest id pruned per agent is kept, so a desktop further behind than that is told to start over
rather than silently skipping what it missed.
"""

import asyncio
import logging
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu.outage import log_retry
from services.router.adapters.feed import FeedItem
from services.router.adapters.orm import agent_feed, agent_feed_horizons

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 60.0
REPLAY_LIMIT = 1000  # a desktop that missed more than this starts over: re-reading is cheaper than a long replay


class Reset(StrEnum):
    """Why a desktop's Last-Event-ID cannot be resumed from."""

    PRUNED = "pruned"  # items after it are no longer kept
    UNKNOWN_ID = "unknown_id"  # newer than any item written (another database, or made up)
    TOO_FAR = "too_far"  # more than REPLAY_LIMIT items behind


async def newest_id(conn: AsyncConnection) -> int:
    """The newest id ever written (0 for none), pruned or not."""
    kept = select(func.max(agent_feed.c.id)).scalar_subquery()
    pruned = select(func.max(agent_feed_horizons.c.pruned_through)).scalar_subquery()
    return int((await conn.execute(select(func.coalesce(func.greatest(kept, pruned), 0)))).scalar_one())


async def since(conn: AsyncConnection, agent_id: str, after: int) -> list[FeedItem] | Reset:
    """The agent's items after id ``after``, oldest first; or why they cannot be given."""
    rows = (
        await conn.execute(
            select(agent_feed.c.id, agent_feed.c.name, agent_feed.c.payload)
            .where(agent_feed.c.agent_id == agent_id, agent_feed.c.id > after)
            .order_by(agent_feed.c.id)
            .limit(REPLAY_LIMIT + 1)
        )
    ).all()
    # read after the items: a prune between the two statements is then seen here (never a silent gap)
    horizon = (
        await conn.execute(
            select(agent_feed_horizons.c.pruned_through).where(agent_feed_horizons.c.agent_id == agent_id)
        )
    ).scalar_one_or_none()
    if horizon is not None and after < horizon:
        return Reset.PRUNED
    if not rows and after > await newest_id(conn):
        return Reset.UNKNOWN_ID
    if len(rows) > REPLAY_LIMIT:
        return Reset.TOO_FAR
    return [FeedItem(r.id, agent_id, r.name, r.payload) for r in rows]


async def prune(conn: AsyncConnection, *, keep_seconds: float) -> int:
    """Delete items older than ``keep_seconds`` (by the database's clock), remembering per agent the newest one
    deleted; return how many agents lost items."""
    gone = (
        delete(agent_feed)
        .where(agent_feed.c.created_at < func.now() - timedelta(seconds=keep_seconds))
        .returning(agent_feed.c.agent_id, agent_feed.c.id)
        .cte("gone")
    )
    horizons = insert(agent_feed_horizons).from_select(
        ["agent_id", "pruned_through"], select(gone.c.agent_id, func.max(gone.c.id)).group_by(gone.c.agent_id)
    )
    upsert = horizons.on_conflict_do_update(
        index_elements=[agent_feed_horizons.c.agent_id],
        set_={"pruned_through": func.greatest(agent_feed_horizons.c.pruned_through, horizons.excluded.pruned_through)},
    ).returning(agent_feed_horizons.c.agent_id)
    return len((await conn.execute(upsert.add_cte(gone))).all())


async def keep_pruned(engine: AsyncEngine, *, keep_seconds: float, every: float = PRUNE_EVERY_SECONDS) -> None:
    """Prune the feed now and every ``every`` seconds, for ever (a background task)."""
    while True:
        try:
            async with engine.begin() as conn:
                agents = await prune(conn, keep_seconds=keep_seconds)
            log.debug("desktop feed pruned: older items of %d agents deleted", agents)
        except Exception as exc:
            log_retry(log, exc, "pruning the desktop feed failed; will retry")
        await asyncio.sleep(every)
