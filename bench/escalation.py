"""The escalation service under load on the embedded PostgreSQL, with the example policy (deploy/examples).

The database holds ``--contacts`` open contacts (10,000) and ``--timers`` pending timers (100,000, due later),
loaded in bulk. Then:

* ``events``: contact and routing events for those contacts go through the service's handlers (the consumers'
  code without Kafka: dedup, facts, policy engine, cases, outbox, timers in one transaction each), with
  ``--workers`` concurrent handlers standing for partitions (a contact always on the same worker);
* ``timers``: ``--due`` key-account contacts whose hold timers come due over ``--spread`` seconds while events
  keep flowing at ``--background-rate`` (a steady load below the saturation the first phase measures: at
  saturation every queue in the process grows, the timers' too); each fired timer runs the policy engine in
  its transaction and opens a case with its routing command. The delay is from the due time to the commit of
  that command into the outbox (``fired_at`` is set in the same transaction, just before the commit; the relay
  is woken right after it).

    python -m bench.escalation
    python -m bench.escalation --events 5000 --workers 4 --due 2000 --spread 30
"""

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.database import migrated_postgres
from contracts import Channel, ContactEvent, Customer, Message, RoutingEvent, RoutingEventType
from kefu import db
from kefu.config_file import load_section
from services.escalation.adapters.timer_runner import TimerRunner
from services.escalation.adapters.timers import TimerStore
from services.escalation.config import EXAMPLE_POLICY
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.service import EscalationService

TEXTS = ["你好，订单什么时候发货", "冰箱不制冷了", "can I change the address?", "好的谢谢", "还没有人回复吗"]
CRISIS = "再不处理我就找记者曝光"

CONTACTS = text(
    """
    INSERT INTO escalation.contact_facts (contact_id, conversation_key, customer_key, queue, tier, status, queued_at)
    SELECT gen_random_uuid(), :prefix || n, 'customer:' || (n % :customers), 'presales',
           CASE WHEN n % 20 = 0 THEN 'vip' ELSE 'standard' END, 'waiting',
           now() - make_interval(secs => random() * 600)
    FROM generate_series(1, :count) AS n
    RETURNING contact_id, conversation_key
    """
)
TIMERS = text(
    """
    INSERT INTO escalation.timers (id, key, kind, contact_id, due_at, payload)
    SELECT gen_random_uuid(), 'bench/' || n, 'sla.resolution.breach', gen_random_uuid(),
           now() + interval '1 day' + make_interval(secs => random() * 86400), '{}'
    FROM generate_series(1, :count) AS n
    """
)
HELD = text(
    """
    INSERT INTO escalation.contact_facts (contact_id, conversation_key, customer_key, queue, tier, owning_tam,
                                          status, queued_at)
    VALUES (:id, :key, :customer, 'presales', 'key_account', 'chen', 'waiting', :queued_at)
    """
)
DELAYS = text(
    """
    SELECT count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.fired_at - t.due_at)),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM t.fired_at - t.due_at)),
           max(extract(epoch FROM t.fired_at - t.due_at))
    FROM escalation.timers t
    JOIN escalation.cases c ON c.contact_id = t.contact_id AND c.trigger = 'key_account'
    WHERE t.kind = 'key_account.hold' AND t.due_at >= :since
    """
)


def contact_message(key: str, text_: str, at: datetime) -> ContactEvent:
    dedup = f"bench-{uuid.uuid4().hex}"
    return ContactEvent(
        event_id=uuid.uuid4(),
        channel=Channel.WEBCHAT,
        account_id="bench",
        conversation_key=key,
        dedup_key=dedup,
        customer=Customer(platform_id=key),
        message=Message(text=text_),
        occurred_at=at,
        received_at=at,
    )


def routing_event(contact_id: uuid.UUID, key: str, kind: RoutingEventType, at: datetime) -> RoutingEvent:
    return RoutingEvent(
        event_id=uuid.uuid4(),
        type=kind,
        occurred_at=at,
        contact_id=contact_id,
        conversation_key=key,
        channel=Channel.WEBCHAT,
        queue_id="presales",
        agent_id=None if kind is RoutingEventType.QUEUED else "alice",
    )


def workload(
    contacts: list[tuple[uuid.UUID, str]], count: int, rng: random.Random
) -> list[ContactEvent | RoutingEvent]:
    """Mostly customer messages, some routing steps, one message in a hundred with a crisis word."""
    kinds = [RoutingEventType.OFFERED, RoutingEventType.DECLINED, RoutingEventType.TRANSFERRED]
    events: list[ContactEvent | RoutingEvent] = []
    now = datetime.now(UTC)
    for _ in range(count):
        contact_id, key = rng.choice(contacts)
        roll = rng.random()
        if roll < 0.6:
            events.append(contact_message(key, CRISIS if roll < 0.01 else rng.choice(TEXTS), now))
        else:
            events.append(routing_event(contact_id, key, rng.choice(kinds), now))
    return events


async def drive(
    escalator: EscalationService,
    events: list[ContactEvent | RoutingEvent],
    workers: int,
    latencies: list[float],
    *,
    rate: float | None = None,
) -> float:
    """Handle ``events`` on ``workers`` concurrent handlers (a conversation always on one), as fast as they go or
    at ``rate`` events/s in all; return the seconds taken."""
    lanes: list[list[ContactEvent | RoutingEvent]] = [[] for _ in range(workers)]
    for event in events:
        lanes[hash(event.conversation_key) % workers].append(event)
    begin = time.perf_counter()

    async def lane(batch: list[ContactEvent | RoutingEvent]) -> None:
        for n, event in enumerate(batch):
            if rate is not None:
                await asyncio.sleep(max(0.0, begin + n * workers / rate - time.perf_counter()))
            started = time.perf_counter()
            if isinstance(event, ContactEvent):
                await escalator.contact_message(event)
            else:
                await escalator.routing_step(event)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(lane(batch) for batch in lanes))
    return time.perf_counter() - started


async def pending(engine: AsyncEngine, kind: str) -> int:
    async with engine.connect() as conn:
        query = text(
            "SELECT count(*) FROM escalation.timers WHERE kind = :kind AND fired_at IS NULL AND cancelled_at IS NULL"
        )
        return int((await conn.execute(query, {"kind": kind})).scalar() or 0)


async def run(url: str, args: argparse.Namespace) -> list[tuple[str, str]]:
    rng = random.Random(args.seed)  # noqa: S311 - a workload, not a secret
    policy = load_section(EXAMPLE_POLICY, "escalation", EscalationPolicy)
    engine = db.create_engine(url, pool_size=args.workers + 4)
    rows: list[tuple[str, str]] = []
    try:
        async with engine.begin() as conn:
            found = await conn.execute(
                CONTACTS, {"prefix": "webchat:bench:", "customers": 5000, "count": args.contacts}
            )
            contacts = [(r.contact_id, r.conversation_key) for r in found]
            await conn.execute(TIMERS, {"count": args.timers})
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
        rows.append(("open contacts / pending timers", f"{args.contacts:,} / {await pending_all(engine):,}"))

        runner = TimerRunner(engine)
        store = TimerStore(engine)
        escalator = EscalationService(engine, policy, after_commit=lambda tx: runner.wake(tx.due) if tx.due else None)
        latencies: list[float] = []
        seconds = await drive(escalator, workload(contacts, args.events, rng), args.workers, latencies)
        rows.append((f"events through the policy engine ({args.workers} workers)", f"{args.events / seconds:,.0f} /s"))
        rows.append(("event latency p50 / p99", _ms(latencies)))

        assert policy.triggers.key_account is not None
        hold = timedelta(minutes=policy.triggers.key_account.hold_minutes)
        since = datetime.now(UTC) + timedelta(seconds=args.lead)
        async with engine.begin() as conn:
            for n in range(args.due):
                due = since + timedelta(seconds=args.spread * n / args.due)
                contact_id = uuid.uuid4()
                await conn.execute(
                    HELD,
                    {
                        "id": contact_id,
                        "key": f"webchat:held:{n}",
                        "customer": f"customer:held-{n}",
                        "queued_at": due - hold,
                    },
                )
                await store.schedule(  # what the queued event of a key-account contact schedules
                    f"{contact_id}/key_account.hold", "key_account.hold", due, contact_id=contact_id, conn=conn
                )
        timer_task = asyncio.create_task(runner.run(escalator.timer_due))
        background: list[float] = []
        steady = workload(contacts, int(args.background_rate * (args.lead + args.spread)), rng)
        load = asyncio.create_task(drive(escalator, steady, args.workers, background, rate=args.background_rate))
        while await pending(engine, "key_account.hold"):
            await asyncio.sleep(0.5)
        events_seconds = await load
        runner.stop()
        await timer_task
        async with engine.connect() as conn:
            count, p50, p99, worst = (await conn.execute(DELAYS, {"since": since})).one()
        rows.append(("timers fired into escalation commands", f"{count:,} over {args.spread:g} s"))
        rows.append(
            (
                "due -> escalation command p50 / p99 / max",
                f"{p50 * 1000:.1f} / {p99 * 1000:.1f} / {worst * 1000:.1f} ms",
            )
        )
        rows.append(
            ("events meanwhile (paced)", f"{len(steady) / events_seconds:,.0f} /s, p50 / p99 {_ms(background)}")
        )
        rows.append(("p99 under 1 s", "yes" if p99 < 1.0 else "NO"))
    finally:
        await engine.dispose()
    return rows


async def pending_all(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM escalation.timers WHERE fired_at IS NULL AND cancelled_at IS NULL")
        return int((await conn.execute(query)).scalar() or 0)


def _ms(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered) * 1000:.1f} / {p99 * 1000:.1f} ms"


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'measure':<{width}} | value", f"|-{'-' * width}-|------"]
    return "\n".join(lines + [f"| {name:<{width}} | {value}" for name, value in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=4, help="concurrent handlers, as partitions would be")
    parser.add_argument("--due", type=int, default=2_000, help="key-account hold timers coming due")
    parser.add_argument("--spread", type=float, default=30.0, help="seconds over which they come due")
    parser.add_argument("--lead", type=float, default=2.0, help="seconds before the first comes due")
    parser.add_argument("--background-rate", type=float, default=50.0, help="events/s while the timers come due")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with migrated_postgres("kefu-bench-escalation-") as url:
        print(table(asyncio.run(run(url, args))))


if __name__ == "__main__":
    main()
