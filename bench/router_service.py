"""Issue 12, the router's share in PostgreSQL: statements, round trips and CPU per contact as a new customer's
contact is consumed (and offered), accepted and completed, and as the customer's second contact is consumed (a
returning customer: ``return``), before and after, in one run.

    python -m bench.router_service [--baseline REV] [--rounds 3] [--contacts 300] [--fetch 25]

Each run (``bench/router_service_run.py``, a process of its own) starts a ``RoutingService`` on a fresh copy of a
migrated embedded PostgreSQL, without Kafka, with the example configuration's queues and 20 bench agents of 25 slots
each (``bench.e2e_stack.write_config``) and sticky routing on (as in deploy/examples/routing.yaml), and applies
``--contacts`` contacts in fetches of ``--fetch``. ``--baseline REV`` runs the same on a git worktree of REV (its
``services``, ``kefu``, ``contracts`` and ``tools`` through ``PYTHONPATH``); runs alternate, and the table has the
medians of ``--rounds`` runs of each. Statements, executes (an ``executemany`` counted by its rows: PostgreSQL runs
one execute a row) and round trips are the same in every run; CPU is the router process's and the PostgreSQL
server's.
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import yaml
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.database import migrated_postgres
from bench.e2e_stack import write_config
from kefu import db

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "bench" / "router_service_run.py"
STICKY = {"window_minutes": 1440, "wait_seconds": 60, "key_account_wait_seconds": 120}

Results = dict[str, dict[str, float]]


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached git worktree of ``rev``, removed on exit."""
    folder = Path(tempfile.mkdtemp(prefix="kefu-bench-router-service-")) / "tree"
    git = ["git", "-C", str(REPO), "worktree"]
    subprocess.run([*git, "add", "--detach", str(folder), rev], check=True, capture_output=True)  # noqa: S603
    try:
        yield folder
    finally:
        subprocess.run([*git, "remove", "--force", str(folder)], check=True, capture_output=True)  # noqa: S603


def bench_config(folder: Path) -> Path:
    config_path, _ = write_config(folder, agents=20, capacity=25)
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["routing"]["sticky"] = STICKY
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return config_path


def one_run(url: str, tree: Path, config_path: Path, args: argparse.Namespace) -> Results:
    """A run on a database copied from the migrated one, dropped afterwards."""
    name = f"kefu_bench_router_{uuid.uuid4().hex[:8]}"
    try:
        admin(url, f'CREATE DATABASE "{name}" TEMPLATE "{make_url(url).database}"')
        command = [sys.executable, str(RUN), make_url(url).set(database=name).render_as_string(hide_password=False)]
        command += [str(config_path), "--contacts", str(args.contacts), "--fetch", str(args.fetch)]
        env = {**os.environ, "PYTHONPATH": str(tree), "KEFU_LOG_LEVEL": "WARNING"}
        done = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=tree)  # noqa: S603
        results: Results = json.loads(done.stdout.splitlines()[-1])
        return results
    finally:
        admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def admin(url: str, statement: str) -> None:
    """Run ``statement`` on the server of ``url``, outside any database the runs use."""

    async def execute() -> None:
        server = make_url(url).set(database="template1").render_as_string(hide_password=False)
        engine = create_async_engine(db.async_url(server), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(execute())


def table(runs: dict[str, list[Results]]) -> None:
    names = list(runs)
    two = len(names) == 2
    print("| phase | per contact | " + " | ".join(names) + (" | after/before |" if two else " |"))
    print("|---|---|" + "---:|" * (len(names) + two))
    first = runs[names[0]][0]
    for phase, measures in first.items():
        for measure in measures:
            medians = [statistics.median(r[phase][measure] for r in runs[name]) for name in names]
            ratio = (f" | {medians[1] / medians[0]:.2f}" if medians[0] else " | -") if two else ""
            print(f"| {phase} | {measure} | " + " | ".join(f"{m:,.2f}" for m in medians) + ratio + " |")


def main(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        trees = {}
        if args.baseline:
            trees[f"before ({args.baseline})"] = stack.enter_context(worktree(args.baseline))
        trees["after (working tree)"] = REPO
        config_path = bench_config(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kefu-bench-"))))
        url = stack.enter_context(migrated_postgres("kefu-bench-router-service-"))
        runs: dict[str, list[Results]] = {name: [] for name in trees}
        for r in range(args.rounds):
            for name in list(trees) if r % 2 == 0 else list(trees)[::-1]:
                runs[name].append(one_run(url, trees[name], config_path, args))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    table(runs)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.router_service", description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="a git revision to run as the 'before'")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--contacts", type=int, default=300)
    parser.add_argument("--fetch", type=int, default=25)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse())
