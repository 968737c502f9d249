"""The engines ``kefu.db`` makes do not ping a pooled connection before lending it (a ping was three round trips,
BEGIN, ``;``, ROLLBACK, before every transaction). A connection the database dropped while it sat in the pool is
found out by the transaction that uses it, once for the whole pool: that failure is transient, so consumers retry the
record, loops retry their pass and routes answer 503 (``kefu.failures``, ``kefu.outage``); the pool then replaces
every connection older than the failure, and the next transaction gets a fresh one."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kefu import db
from kefu.failures import transient
from kefu.outage import unavailable

pytestmark = pytest.mark.integration

POOL = 3


async def _backend(engine: AsyncEngine, held: asyncio.Event, release: asyncio.Event) -> int:
    async with engine.connect() as conn:
        pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        held.set()
        await release.wait()
    return pid


async def _pool_of(engine: AsyncEngine, size: int) -> list[int]:
    """Fill the pool with ``size`` connections (held at once, then returned); their server pids."""
    release = asyncio.Event()
    helds = [asyncio.Event() for _ in range(size)]
    tasks = [asyncio.create_task(_backend(engine, held, release)) for held in helds]
    await asyncio.gather(*(held.wait() for held in helds))
    release.set()
    return list(await asyncio.gather(*tasks))


async def test_connections_the_database_dropped_cost_one_transient_failure_for_the_whole_pool(
    database_url: str,
) -> None:
    engine = db.create_engine(database_url, pool_size=POOL)
    admin = create_async_engine(database_url)
    try:
        pids = await _pool_of(engine, POOL)
        async with admin.connect() as conn:  # as a restarted server or a proxy's idle timeout would
            await conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"), {"pids": pids}
            )
        outcomes: list[str] = []
        for _ in range(POOL + 1):
            try:
                async with engine.begin() as conn:
                    pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                outcomes.append("new" if pid not in pids else "dropped one")
            except DBAPIError as exc:
                assert exc.connection_invalidated and transient(exc) and unavailable(exc) == "database", exc
                outcomes.append("transient failure")
        assert outcomes == ["transient failure", "new", "new", "new"]
    finally:
        await admin.dispose()
        await engine.dispose()
