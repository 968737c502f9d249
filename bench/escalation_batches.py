"""Issue 12, the escalation service's share: its CPU and statements per record as its consumers apply them, a fetch
at a time (``EscalationService.contact_messages`` and ``routing_steps``, the consumers' code without Kafka), on the
embedded PostgreSQL with the example policy (deploy/examples).

The workload is what the router and the channels publish for ``--contacts`` contacts arriving at ``--rate`` per
second: each a customer message, then ``queued``, ``offered``, ``accepted``, ``assigned`` and, ``--handle`` seconds
later, ``completed`` (five routing events); customers drawn from ``--customers`` (some contacts are repeats), one in
twenty a VIP. Time is cut into fetches of ``--window`` seconds: each fetch's messages are applied as one batch, then
its routing events as another.

    python -m bench.escalation_batches [--baseline REV] [--rounds 1] [--shapes 40:0.05 250:0.2]
    make bench-escalation-batches ARGS="--baseline REV"

Each ``--shapes`` RATE:WINDOW is a workload (``--contacts`` of them; 40 contacts/s in fetches of 50 ms is about what
the consumers fetch at 40/s end to end). The service's clock is the end of the fetch being applied, so what the
policy decides does not depend on how fast the machine is. A table per shape: statements sent per contact (as
PostgreSQL executes them: an ``executemany`` counts once per row, a multi-row ``VALUES`` or ``unnest`` once),
transactions per contact, and this process's CPU per contact and per routing event (the messages' CPU included;
medians of ``--rounds``), and whether the database holds the same after (facts, messages, cases, timers pending and
cancelled, contacts with a trigger fired).

``--baseline REV`` runs the same workload, in the same run, on the tree of that git revision (``git archive`` into a
temporary folder, imported from there in a process of its own: this file's workload, that tree's code), alternating
with the working tree round by round. Without it, the working tree alone.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import ExecuteStyle
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.database import migrated_postgres
from contracts import Channel, ContactEvent, Customer, Message, RoutingEvent, RoutingEventType
from kefu import db
from kefu.config_file import load_section
from services.escalation.config import EXAMPLE_POLICY
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.service import EscalationService

Record = ContactEvent | RoutingEvent
STEPS = (
    (0.01, RoutingEventType.QUEUED),
    (0.01, RoutingEventType.OFFERED),
    (0.5, RoutingEventType.ACCEPTED),
    (0.5, RoutingEventType.ASSIGNED),
)
TEXTS = ["你好，订单什么时候发货", "冰箱不制冷了", "can I change the address?", "好的谢谢", "还没有人回复吗"]
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent
EMPTY = """
    TRUNCATE escalation.contact_facts, escalation.contact_messages, escalation.routing_events, escalation.cases,
             escalation.case_audit, escalation.timers, escalation.notifications, escalation.outbox
"""
HELD = """
    SELECT (SELECT count(*) FROM escalation.contact_facts),
           (SELECT count(*) FROM escalation.contact_messages),
           (SELECT count(*) FROM escalation.routing_events),
           (SELECT count(*) FROM escalation.cases),
           (SELECT count(*) FROM escalation.timers WHERE cancelled_at IS NULL),
           (SELECT count(*) FROM escalation.timers WHERE cancelled_at IS NOT NULL),
           (SELECT count(*) FROM escalation.contact_facts WHERE cardinality(fired) > 0)
"""


def workload(args: argparse.Namespace, rate: float, start: datetime) -> list[tuple[datetime, Record]]:
    """Every record with the time it is published, in that order."""
    rng = random.Random(args.seed)  # noqa: S311 - a workload, not a secret
    out: list[tuple[datetime, Record]] = []
    for n in range(args.contacts):
        at = start + timedelta(seconds=n / rate)
        customer = rng.randrange(args.customers)
        key = f"webchat:bench:{n}"
        first = ContactEvent(
            event_id=uuid.uuid4(),
            channel=Channel.WEBCHAT,
            account_id="bench",
            conversation_key=key,
            dedup_key=f"bench-{n}",
            customer=Customer(platform_id=f"visitor-{customer}"),
            message=Message(text=rng.choice(TEXTS)),
            occurred_at=at,
            received_at=at,
        )
        out.append((at, first))
        tier = "vip" if customer % 20 == 0 else "standard"
        steps = [*STEPS, (args.handle, RoutingEventType.COMPLETED)]
        for delay, kind in steps:
            routed = at + timedelta(seconds=delay)
            out.append(
                (
                    routed,
                    RoutingEvent(
                        event_id=uuid.uuid4(),
                        type=kind,
                        occurred_at=routed,
                        contact_id=first.event_id,
                        conversation_key=key,
                        channel=Channel.WEBCHAT,
                        queue_id="presales",
                        agent_id=None if kind is RoutingEventType.QUEUED else f"agent-{n % 200}",
                        customer_id=uuid.UUID(int=customer + 1),
                        customer_tier=tier,
                    ),
                )
            )
    out.sort(key=lambda pair: pair[0])
    return out


def fetches(
    records: list[tuple[datetime, Record]], window: float
) -> list[tuple[list[ContactEvent], list[RoutingEvent]]]:
    """The records cut into fetches of ``window`` seconds: each fetch's messages and routing events."""
    out: list[tuple[list[ContactEvent], list[RoutingEvent]]] = []
    begin = records[0][0]
    for at, record in records:
        slot = int((at - begin).total_seconds() / window)
        while len(out) <= slot:
            out.append(([], []))
        if isinstance(record, ContactEvent):
            out[slot][0].append(record)
        else:
            out[slot][1].append(record)
    return [fetch for fetch in out if fetch[0] or fetch[1]]


def counting(engine: AsyncEngine) -> dict[str, int]:
    """Counters of the statements PostgreSQL executes for ``engine`` (an ``executemany`` once a row; ``VALUES`` lists
    and ``unnest`` once) and of its commits."""
    sent = {"statements": 0, "transactions": 0}

    def count(_conn: Any, _cursor: Any, _sql: str, parameters: Any, context: Any, executemany: bool) -> None:
        rows = executemany and context is not None and context.execute_style is ExecuteStyle.EXECUTEMANY
        sent["statements"] += len(parameters) if rows else 1

    def commit(_conn: Any) -> None:
        sent["transactions"] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    event.listen(engine.sync_engine, "commit", commit)
    return sent


async def shape(
    engine: AsyncEngine, sent: dict[str, int], args: argparse.Namespace, rate: float, window: float
) -> dict[str, Any]:
    """One workload of ``rate`` contacts/s in fetches of ``window`` seconds, on emptied tables."""
    async with engine.begin() as conn:
        await conn.execute(text(EMPTY))
    policy = load_section(EXAMPLE_POLICY, "escalation", EscalationPolicy)
    now = [START]
    service = EscalationService(engine, policy, clock=lambda: now[0])
    records = workload(args, rate, START)
    batches = fetches(records, window)
    routing = sum(len(r) for _, r in batches)
    await service.contact_messages([])  # warm: the pool's connection, the first statements
    sent.update(statements=0, transactions=0)
    cpu = time.process_time()
    for n, (messages, steps) in enumerate(batches):
        now[0] = START + timedelta(seconds=(n + 1) * window)  # the end of the fetch's records
        if messages:
            await service.contact_messages(messages)
        if steps:
            await service.routing_steps(steps)
    cpu = time.process_time() - cpu
    counted = dict(sent)
    async with engine.connect() as conn:
        held = list((await conn.execute(text(HELD))).one())
    contacts = len(records) - routing
    names = ("facts", "messages", "routing_events", "cases", "timers_live", "timers_cancelled", "fired")
    return {
        "cpu_ms_per_contact": cpu * 1000 / contacts,
        "cpu_ms_per_routing_event": cpu * 1000 / routing,
        "statements_per_contact": counted["statements"] / contacts,
        "transactions_per_contact": counted["transactions"] / contacts,
        "held": dict(zip(names, held, strict=True)),
    }


def shapes(args: argparse.Namespace) -> list[tuple[float, float]]:
    return [(float(rate), float(window)) for rate, window in (item.split(":") for item in args.shapes)]


async def measure(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every shape on this process's tree."""
    engine = db.create_engine(url)
    try:
        sent = counting(engine)
        return [await shape(engine, sent, args, rate, window) for rate, window in shapes(args)]
    finally:
        await engine.dispose()


def one(args: argparse.Namespace) -> None:
    """This process's tree on a database of its own: a JSON list, a result a shape."""
    with migrated_postgres("kefu-bench-escalation-batches-") as url:
        print(json.dumps(asyncio.run(measure(url, args))), flush=True)


def run_tree(tree: Path | None, argv: list[str]) -> list[dict[str, Any]]:
    """This file's workload in a process importing ``tree``'s code (the working tree's without)."""
    env = dict(os.environ, PYTHONPATH=str(tree or REPO))
    command = [sys.executable, str(Path(__file__).resolve()), "--one", *argv]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True, cwd=tree or REPO)  # noqa: S603
    result: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def table(args: argparse.Namespace, results: dict[str, list[list[dict[str, Any]]]]) -> None:
    columns = ("statements_per_contact", "transactions_per_contact", "cpu_ms_per_contact", "cpu_ms_per_routing_event")
    print(f"{args.contacts} contacts, medians of {args.rounds} rounds (statements and transactions do not vary)")
    for n, (rate, window) in enumerate(shapes(args)):
        print(f"\n{rate:g} contacts/s, fetches of {window * 1000:g} ms")
        print(f"{'tree':<10}" + "".join(f"{name:>28}" for name in columns) + "  same outcome")
        reference = None
        for name, rounds in results.items():
            cells = [statistics.median(r[n][column] for r in rounds) for column in columns]
            held = rounds[0][n]["held"]
            reference = reference or held
            print(f"{name:<10}" + "".join(f"{cell:>28.2f}" for cell in cells) + f"  {held == reference}")
        print(f"held: {reference}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=300)
    parser.add_argument("--shapes", nargs="+", default=["40:0.05", "250:0.2"], help="RATE:WINDOW (contacts/s:s)")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--handle", type=float, default=5.0, help="seconds from offered to completed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", help="a git revision whose tree is the 'before'")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.one:
        one(args)
        return
    argv = [a for a in sys.argv[1:] if a not in ("--baseline", args.baseline)]
    with tempfile.TemporaryDirectory(prefix="kefu-bench-escalation-baseline-") as folder:
        trees: dict[str, Path | None] = {"working": None}
        if args.baseline:
            archive = subprocess.run(["git", "archive", args.baseline], cwd=REPO, check=True, capture_output=True)  # noqa: S603, S607
            subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)  # noqa: S603, S607
            trees = {"baseline": Path(folder), **trees}
        results: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                results[name].append(run_tree(tree, argv))
    table(args, results)


if __name__ == "__main__":
    main()
