"""Issue 12, the escalation service's share: its CPU and statements per record as its consumers apply them, a fetch
at a time (``EscalationService.contact_messages`` and ``routing_steps``, the consumers' code without Kafka), on the
embedded PostgreSQL with the example policy (deploy/examples).

The workload is what the router and the channels publish for ``--contacts`` contacts arriving at ``--rate`` per
second: each a customer message, then ``queued``, ``offered``, ``accepted``, ``assigned`` and, ``--handle`` seconds
later, ``completed`` (five routing events); customers drawn from ``--customers`` (some contacts are repeats), one in
twenty a VIP. Time is cut into fetches of ``--window`` seconds: each fetch's messages are applied as one batch, then
its routing events as another.

    python -m bench.escalation_batches
    PYTHONPATH=/path/to/other/tree python bench/escalation_batches.py   # the same workload on another tree

prints one JSON line: the process's CPU seconds and wall seconds applying the workload, CPU ms per routing event
(all CPU over the routing events: the messages' CPU included), statements sent (``executemany`` counts once), and
what the database holds after (facts, messages, cases, timers pending and cancelled): the same on any tree that
applies it the same way.
"""

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, text
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
HELD = """
    SELECT (SELECT count(*) FROM escalation.contact_facts),
           (SELECT count(*) FROM escalation.contact_messages),
           (SELECT count(*) FROM escalation.routing_events),
           (SELECT count(*) FROM escalation.cases),
           (SELECT count(*) FROM escalation.timers WHERE cancelled_at IS NULL),
           (SELECT count(*) FROM escalation.timers WHERE cancelled_at IS NOT NULL),
           (SELECT count(*) FROM escalation.contact_facts WHERE cardinality(fired) > 0)
"""


def workload(args: argparse.Namespace, start: datetime) -> list[tuple[datetime, Record]]:
    """Every record with the time it is published, in that order."""
    rng = random.Random(args.seed)  # noqa: S311 - a workload, not a secret
    out: list[tuple[datetime, Record]] = []
    for n in range(args.contacts):
        at = start + timedelta(seconds=n / args.rate)
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


def counting(engine: AsyncEngine) -> list[int]:
    """A counter of the statements ``engine`` sends (an executemany once)."""
    sent = [0]

    def count(*_: Any) -> None:
        sent[0] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    return sent


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    policy = load_section(EXAMPLE_POLICY, "escalation", EscalationPolicy)
    engine = db.create_engine(url)
    try:
        service = EscalationService(engine, policy)
        records = workload(args, datetime.now(UTC))
        batches = fetches(records, args.window)
        routing = sum(len(r) for _, r in batches)
        sent = counting(engine)
        await service.contact_messages([])  # warm: the pool's connection, the first statements
        sent[0] = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for messages, steps in batches:
            if messages:
                await service.contact_messages(messages)
            if steps:
                await service.routing_steps(steps)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        async with engine.connect() as conn:
            held = list((await conn.execute(text(HELD))).one())
    finally:
        await engine.dispose()
    names = ("facts", "messages", "routing_events", "cases", "timers_live", "timers_cancelled", "fired")
    return {
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "cpu_ms_per_routing_event": round(cpu * 1000 / routing, 3),
        "statements_per_routing_event": round(sent[0] / routing, 2),
        "batches": len(batches),
        "routing_events": routing,
        "messages": len(records) - routing,
        **dict(zip(names, held, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=250.0, help="contacts per second")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--handle", type=float, default=5.0, help="seconds from offered to completed")
    parser.add_argument("--window", type=float, default=0.2, help="seconds of records per fetch")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with migrated_postgres("kefu-bench-escalation-batches-") as url:
        print(json.dumps(asyncio.run(run(url, args))), flush=True)


if __name__ == "__main__":
    main()
