"""The outbox relay's cost per row and per pass (issue 12), before and after, in one run.

    python -m bench.outbox [--baseline REV] [--rounds 5] [--rows 10000] [--passes 300] [--per-commit 4]
                           [--commit-rate 150]

Two workloads on the machine's PostgreSQL (``--database-url``, a database of its own created and dropped) and an
embedded Tansu broker (a topic of 6 partitions):

* ``backlog``: ``--rows`` unpublished rows, drained by ``relay_once`` in batches of 500 (a relay catching up);
* ``trickle``: ``--passes`` commits of ``--per-commit`` rows, each followed by one ``relay_once`` (a relay woken by
  every commit, as under a moderate load: the pass's fixed cost is most of it);
* ``woken``: the relay's own loop (``run``) while ``--passes`` commits of ``--per-commit`` rows come at
  ``--commit-rate`` a second, each waking it, as a service's commits do: CPU a row (the commits' included) and
  passes a commit, until every row is published.

``--baseline REV`` loads ``kefu/outbox.py`` and ``kefu/db.py`` of that git revision (engine settings included) as
the "before"; the working tree's are the "after". Variants alternate round by round; the table has the medians of
``--rounds`` and the ratio after/before. CPU is this process's (the relay's client side: SQLAlchemy, asyncpg,
aiokafka), not PostgreSQL's or the broker's. A last, untimed pass under cProfile counts SQLAlchemy compilations
(``_compile_w_cache``, ``visit_*`` calls) and requests sent (socket sends: PostgreSQL's round trips, and the
broker's produce request) per pass.
"""

import argparse
import asyncio
import cProfile
import importlib.util
import json
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from prometheus_client import REGISTRY, Counter
from sqlalchemy import MetaData, Table, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import kefu.db
import kefu.outbox
from kefu import kafka
from tools.embedded import EmbeddedKafka, free_port

TOPIC = "kefu.bench.outbox.v1"
SCHEMA = "bench_outbox"
REPO = Path(__file__).resolve().parent.parent
SOCKET_SEND = "<method 'send' of '_socket.socket' objects>"  # a request to PostgreSQL or the broker


@dataclass(frozen=True)
class Variant:
    name: str
    outbox: ModuleType
    db: ModuleType


def _load(rev: str, path: str, name: str) -> ModuleType:
    """``path`` as it was at ``rev``, imported as module ``name``."""
    show = ["git", "show", f"{rev}:{path}"]
    source = subprocess.run(show, cwd=REPO, check=True, capture_output=True, text=True)  # noqa: S603
    with tempfile.TemporaryDirectory(prefix="kefu-bench-outbox-") as folder:  # read once, when executed
        file = Path(folder) / f"{name}.py"
        file.write_text(source.stdout, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def baseline(rev: str) -> Variant:
    # the baseline registers the same metric names: the working tree's counters leave the registry first
    for value in vars(kefu.outbox).values():
        if isinstance(value, Counter):
            REGISTRY.unregister(value)
    return Variant(f"before ({rev})", _load(rev, "kefu/outbox.py", "outbox_before"), _load(rev, "kefu/db.py", "db_b"))


class Stage:
    """The database of the bench and its outbox table."""

    def __init__(self, url: str) -> None:
        self.admin_url = url
        self.name = f"kefu_bench_outbox_{uuid.uuid4().hex[:8]}"
        self.url = make_url(url).set(database=self.name).render_as_string(hide_password=False)
        self.table = kefu.outbox.outbox_table(MetaData(schema=SCHEMA))

    async def __aenter__(self) -> "Stage":
        admin = create_async_engine(kefu.db.async_url(self.admin_url), isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        await admin.dispose()
        engine = create_async_engine(kefu.db.async_url(self.url))
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
            await conn.run_sync(self.table.metadata.create_all)
        await engine.dispose()
        return self

    async def __aexit__(self, *exc: object) -> None:
        admin = create_async_engine(kefu.db.async_url(self.admin_url), isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{self.name}" WITH (FORCE)'))
        await admin.dispose()


def _rows(n: int, start: int) -> list[dict[str, Any]]:
    payload = json.dumps(
        {"type": "offered", "contact_id": str(uuid.uuid4()), "agent_id": "agent-0042", "pad": "x" * 300}
    )
    return [kefu.outbox.outbox_row(TOPIC, f"conversation-{(start + i) % 97}", payload) for i in range(n)]


async def _truncate(engine: AsyncEngine, table: Table) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {table.fullname}"))


async def backlog(relay: Any, engine: AsyncEngine, table: Table, rows: int) -> dict[str, float]:
    await _truncate(engine, table)
    async with engine.begin() as conn:
        for start in range(0, rows, 1000):
            await conn.execute(insert(table), _rows(min(1000, rows - start), start))
    cpu, wall = time.process_time(), time.perf_counter()
    sent = total = 1
    while sent:
        sent = await relay.relay_once()
        total += sent
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"rows/s": rows / wall, "CPU µs/row": cpu / rows * 1e6}


async def trickle(relay: Any, engine: AsyncEngine, table: Table, passes: int, per_commit: int) -> dict[str, float]:
    await _truncate(engine, table)
    cpu = wall = 0.0
    for n in range(passes):
        async with engine.begin() as conn:
            await conn.execute(insert(table), _rows(per_commit, n))
        started_cpu, started = time.process_time(), time.perf_counter()
        assert await relay.relay_once() == per_commit
        cpu += time.process_time() - started_cpu
        wall += time.perf_counter() - started
    return {
        "ms/pass": wall / passes * 1e3,
        "CPU µs/pass": cpu / passes * 1e6,
        "CPU µs/row": cpu / passes / per_commit * 1e6,
    }


async def woken(
    relay: Any, engine: AsyncEngine, table: Table, commits: int, per_commit: int, rate: float
) -> dict[str, float]:
    await _truncate(engine, table)
    passes = 0
    relay_once = relay.relay_once

    async def counted() -> int:
        nonlocal passes
        sent: int = await relay_once()
        passes += sent > 0
        return sent

    relay.relay_once = counted
    running = asyncio.create_task(relay.run())
    cpu = time.process_time()
    try:
        for n in range(commits):
            async with engine.begin() as conn:
                await conn.execute(insert(table), _rows(per_commit, n))
            relay.wake()
            await asyncio.sleep(1 / rate)
        left = select(func.count()).select_from(table).where(table.c.published_at.is_(None))
        while True:
            async with engine.connect() as conn:
                if (await conn.execute(left)).scalar_one() == 0:
                    break
            await asyncio.sleep(0.01)
        cpu = time.process_time() - cpu
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        del relay.relay_once
    return {"CPU µs/row": cpu / (commits * per_commit) * 1e6, "passes/commit": passes / commits}


def _counts(profile: cProfile.Profile, passes: int) -> dict[str, float]:
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    compiles = visits = sends = 0
    for (_, _, function), (_, calls, *_) in stats.items():
        compiles += calls if function == "_compile_w_cache" else 0
        visits += calls if function.startswith("visit_") else 0
        sends += calls if function == SOCKET_SEND else 0
    return {"compiles/pass": compiles / passes, "visit_*/pass": visits / passes, "socket sends/pass": sends / passes}


async def profiled(relay: Any, engine: AsyncEngine, table: Table, passes: int, per_commit: int) -> dict[str, float]:
    await _truncate(engine, table)
    profile = cProfile.Profile()
    for n in range(passes):
        async with engine.begin() as conn:
            await conn.execute(insert(table), _rows(per_commit, n))
        profile.enable()
        await relay.relay_once()
        profile.disable()
    return _counts(profile, passes)


async def measure(args: argparse.Namespace, variants: list[Variant], broker: EmbeddedKafka, stage: Stage) -> None:
    producer = kafka.create_producer(broker.bootstrap)
    await producer.start()
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    engines = {v.name: v.db.create_engine(stage.url) for v in variants}
    try:
        relays = {v.name: v.outbox.OutboxRelay(engines[v.name], stage.table, producer) for v in variants}
        workloads: dict[str, Callable[[Variant], Awaitable[dict[str, float]]]] = {
            "backlog": lambda v: backlog(relays[v.name], engines[v.name], stage.table, args.rows),
            "trickle": lambda v: trickle(relays[v.name], engines[v.name], stage.table, args.passes, args.per_commit),
            "woken": lambda v: woken(
                relays[v.name], engines[v.name], stage.table, args.passes, args.per_commit, args.commit_rate
            ),
        }
        for v in variants:  # warm-up: connections, prepared statements, metadata
            await trickle(relays[v.name], engines[v.name], stage.table, 20, args.per_commit)
        for r in range(args.rounds):
            for workload, run in workloads.items():
                for v in variants if r % 2 == 0 else variants[::-1]:
                    results.setdefault((workload, v.name), []).append(await run(v))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        for v in variants:
            profile = await profiled(relays[v.name], engines[v.name], stage.table, 100, args.per_commit)
            results[("trickle, profiled", v.name)] = [profile]
    finally:
        for engine in engines.values():
            await engine.dispose()
        await producer.stop()
    _table(results, [v.name for v in variants])


def _table(results: dict[tuple[str, str], list[dict[str, float]]], names: list[str]) -> None:
    print("| workload | measure | " + " | ".join(names) + (" | after/before |" if len(names) == 2 else " |"))
    print("|---|---|" + "---:|" * (len(names) + (len(names) == 2)))
    for workload in dict.fromkeys(w for w, _ in results):
        for measure in results[(workload, names[0])][0]:
            medians = [statistics.median(run[measure] for run in results[(workload, name)]) for name in names]
            ratio = (
                f" | {medians[1] / medians[0]:.2f}" if len(names) == 2 and medians[0] else " | -" * (len(names) == 2)
            )
            print(f"| {workload} | {measure} | " + " | ".join(f"{m:,.1f}" for m in medians) + ratio + " |")


async def main(args: argparse.Namespace) -> None:
    variants = [baseline(args.baseline)] if args.baseline else []
    variants.append(Variant("after (working tree)", kefu.outbox, kefu.db))
    broker = EmbeddedKafka(free_port()).start()
    try:
        await kafka.ensure_topics(broker.bootstrap, [TOPIC])
        async with Stage(args.database_url) as stage:
            await measure(args, variants, broker, stage)
    finally:
        broker.stop()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--baseline", help="a git revision whose kefu/outbox.py and kefu/db.py are the 'before'")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--passes", type=int, default=300)
    parser.add_argument("--per-commit", type=int, default=4)
    parser.add_argument("--commit-rate", type=float, default=150, help="commits a second in 'woken' (default 150)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
