"""Escalation timers on the embedded PostgreSQL: firing throughput and the delay from due time to firing.

Two phases on a fresh, migrated database, each with 100,000 pending timers and a trivial handler:

* ``spread``: due times spread evenly at random over the next ``--spread`` seconds while the runners
  run (the steady state; the issue's target is a p99 delay under 1 s);
* ``backlog``: every timer already overdue when the runners start (a restart after an outage), which
  measures how fast a backlog drains.

The delay is ``fired_at - due_at`` as the database records them (``fired_at`` is set in the handler's
transaction, just before its commit).

    python -m bench.escalation_timers
    python -m bench.escalation_timers --timers 20000 --spread 20 --runners 2
"""

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bench.database import migrated_postgres
from kefu import db
from services.escalation.adapters.timer_runner import TimerRunner
from services.escalation.adapters.timers import Timer, TimerStore

BULK = text(
    """
    INSERT INTO escalation.timers (id, key, kind, contact_id, due_at, payload)
    SELECT gen_random_uuid(), :prefix || n, 'sla.first_response.breach', gen_random_uuid(),
           now() + make_interval(secs => :lead + random() * :spread), '{"queue": "presales"}'
    FROM generate_series(1, :count) AS n
    """
)
STATS = text(
    """
    SELECT count(*),
           extract(epoch FROM max(fired_at) - min(fired_at)),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM fired_at - due_at))
               FILTER (WHERE due_at >= :since),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM fired_at - due_at))
               FILTER (WHERE due_at >= :since),
           max(extract(epoch FROM fired_at - due_at))
               FILTER (WHERE due_at >= :since),
           count(*) FILTER (WHERE due_at < :since)
    FROM escalation.timers WHERE key LIKE :prefix || '%'
    """
)


async def nothing(timer: Timer, conn: AsyncConnection) -> None:
    """The trivial handler: the runner's own cost only."""


async def load(engine: AsyncEngine, prefix: str, *, count: int, scheduled: int, lead: float, spread: float) -> None:
    """``scheduled`` timers through ``TimerStore.schedule`` (timed), the rest in one INSERT … SELECT."""
    store = TimerStore(engine)
    started = time.perf_counter()
    for n in range(scheduled):
        due = datetime.now(UTC) + timedelta(seconds=lead + spread * n / max(scheduled, 1))
        await store.schedule(f"{prefix}s{n}", "sla.first_response.warn", due, contact_id=uuid.uuid4())
    if scheduled:
        print(f"  schedule(): {scheduled / (time.perf_counter() - started):,.0f} calls/s (one at a time)")
    async with engine.begin() as conn:
        await conn.execute(BULK, {"prefix": prefix, "lead": lead, "spread": spread, "count": count - scheduled})
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE escalation.timers"))


async def phase(engine: AsyncEngine, name: str, args: argparse.Namespace, *, lead: float, spread: float) -> None:
    prefix = f"{name}:"
    print(f"{name}: {args.timers:,} timers due over {spread:g} s, {args.runners} runner(s), batch {args.batch}")
    await load(engine, prefix, count=args.timers, scheduled=args.scheduled, lead=lead, spread=spread)
    runners = [TimerRunner(engine, batch=args.batch) for _ in range(args.runners)]
    since = datetime.now(UTC)  # timers due before the runners start (a slow load) are no steady-state sample
    tasks = [asyncio.create_task(runner.run(nothing)) for runner in runners]
    started = time.perf_counter()
    async with engine.connect() as conn:
        while True:
            pending = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM escalation.timers "
                        "WHERE fired_at IS NULL AND cancelled_at IS NULL AND key LIKE :prefix || '%'"
                    ),
                    {"prefix": prefix},
                )
            ).scalar()
            await conn.commit()
            if not pending:
                break
            if time.perf_counter() - started > lead + spread + 600:
                raise SystemExit(f"{pending:,} timers still pending after {time.perf_counter() - started:.0f} s")
            await asyncio.sleep(0.5)
    for runner in runners:
        runner.stop()
    await asyncio.gather(*tasks)
    async with engine.connect() as conn:
        count, window, p50, p99, worst, early = (await conn.execute(STATS, {"prefix": prefix, "since": since})).one()
    rate = f"  fired {count:,} in {window:.1f} s: {count / max(float(window), 1e-9):,.0f} timers/s"
    if lead < 0:
        print(f"{rate}; all were overdue at start, drained {time.perf_counter() - started:.1f} s after it")
    else:
        print(
            f"{rate}; delay p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {float(worst) * 1000:.1f} ms"
            f" ({early:,} due before the runner started left out)"
        )


async def run(url: str, args: argparse.Namespace) -> None:
    engine = db.create_engine(url, pool_size=args.runners + 2)
    try:
        await phase(engine, "spread", args, lead=args.lead, spread=args.spread)
        if not args.no_backlog:
            await phase(engine, "backlog", args, lead=-1.0 - args.spread, spread=args.spread)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which the timers come due")
    parser.add_argument("--lead", type=float, default=3.0, help="seconds before the first can come due")
    parser.add_argument("--scheduled", type=int, default=2_000, help="of the timers, how many via schedule()")
    parser.add_argument("--runners", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--no-backlog", action="store_true", help="skip the overdue-backlog phase")
    args = parser.parse_args()

    with migrated_postgres("kefu-bench-timers-") as url:
        asyncio.run(run(url, args))


if __name__ == "__main__":
    main()
