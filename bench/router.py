"""``make bench-router``: the in-memory decision core against PostgreSQL ``FOR UPDATE SKIP LOCKED``.

A synthetic contact centre (by default 15,000 agents, 500,000 waiting contacts, 200 queues, 64
skills) goes through a mix of events — arrivals, accepts, declines, completions, agents going away
and coming back, offer expiries — with ``decide`` + ``apply`` timed per event. The baseline makes
the same two decisions (route an arriving contact, fill a freed agent) in SQL on the embedded
PostgreSQL, one transaction per event, with the indexes a careful implementation would have.

    python -m bench.router                      # full size
    python -m bench.router --agents 500 --contacts 5000 --events 5000 --baseline-events 500   # quick
"""

import argparse
import asyncio
import gc
import random
import resource
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # no stubs; the baseline talks to it directly

from contracts import Channel
from services.router.domain.decide import apply, decide
from services.router.domain.decisions import (
    Assigned,
    AssignmentCompleted,
    ClockTicked,
    ContactArrived,
    Event,
    OfferAccepted,
    OfferDeclined,
    Offered,
    PresenceRequested,
)
from services.router.domain.model import Agent, ContactRef, Presence, Queue, RoutingState, WaitingContact
from tools.embedded import EmbeddedPostgres

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)
CHANNELS = [Channel.PHONE, Channel.WEBCHAT, Channel.EMAIL, Channel.WECHAT]
CAPACITY = {Channel.PHONE: 1, Channel.WEBCHAT: 3, Channel.EMAIL: 5, Channel.WECHAT: 3}


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - a reproducible synthetic load, not a secret


@dataclass
class Result:
    name: str
    events: int
    decisions: int
    seconds: float
    latencies_ns: list[int]

    def row(self) -> str:
        ordered = sorted(self.latencies_ns)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] / 1e6

        return (
            f"{self.name:<34} {self.events / self.seconds:>10,.0f} {self.decisions / self.seconds:>12,.0f} "
            f"{pct(0.5):>8.3f} {pct(0.99):>8.3f} {ordered[-1] / 1e6:>8.2f}"
        )


# ---- the synthetic contact centre ----


def build_state(rng: random.Random, *, agents: int, contacts: int, queues: int, skills: int) -> RoutingState:
    names = [f"skill{n}" for n in range(skills)]
    queue_list = [
        Queue(
            f"q{n}",
            f"Queue {n}",
            frozenset(rng.sample(CHANNELS, rng.randint(1, 3))),
            {s: rng.randint(1, 3) for s in rng.sample(names, rng.randint(1, 3))},
            rng.choice([0, 10, 20, 30]),
            timedelta(seconds=30),
        )
        for n in range(queues)
    ]
    state = RoutingState(queues={q.id: q for q in queue_list})
    for n in range(agents):
        # trained for one to three queues, plus a few unrelated skills
        agent_skills = {s: rng.randint(1, 5) for s in rng.sample(names, rng.randint(0, 3))}
        for queue in rng.sample(queue_list, rng.randint(1, 3)):
            for skill, minimum in queue.skills.items():
                agent_skills[skill] = max(agent_skills.get(skill, 0), rng.randint(minimum, 5))
        capacity = {c: CAPACITY[c] for c in rng.sample(CHANNELS, rng.randint(1, 3))}
        idle = T0 - timedelta(seconds=rng.randint(0, 3600))
        state.agents[f"agent{n}"] = Agent(
            f"agent{n}", f"Agent {n}", ("tier1",), agent_skills, capacity, Presence.AWAY, idle
        )
    for n in range(contacts):
        queue = rng.choice(queue_list)
        channel = rng.choice(sorted(queue.channels))
        enqueued = T0 - timedelta(milliseconds=rng.randint(0, 3_600_000))
        ref = ContactRef(
            uuid.UUID(int=n + 1), f"c{n}", channel, queue.id, queue.priority + rng.choice([0, 0, 5]), enqueued
        )
        state.waiting[ref.id] = WaitingContact(ref)  # as load_state does
    return state


class Driver:
    """Draws a realistic next event from what is pending in the state."""

    def __init__(self, state: RoutingState, rng: random.Random) -> None:
        self.state, self.rng = state, rng
        self.offers: deque[uuid.UUID] = deque()
        self.assignments: deque[uuid.UUID] = deque()
        self.away: list[str] = []
        self.next_contact = len(state.waiting) + 1_000_000
        self.target = len(state.waiting)  # arrivals top the waiting count back up to where it started
        self.queues = list(state.queues.values())

    def next_event(self, now: datetime) -> Event:
        roll = self.rng.random()
        if roll < 0.005:
            return ClockTicked()
        if roll < 0.02:
            if self.away and self.rng.random() < 0.5:
                return PresenceRequested(self.away.pop(), Presence.AVAILABLE)
            agent_id = f"agent{self.rng.randrange(len(self.state.agents))}"
            if self.state.agents[agent_id].presence is Presence.AVAILABLE:
                self.away.append(agent_id)
                return PresenceRequested(agent_id, Presence.AWAY)
        elif len(self.state.waiting) < self.target and self.rng.random() < 0.5:
            return self._arrival(now)  # accepts take contacts out: keep the waiting count near the start
        while self.offers and roll < 0.55 and self.offers[0] not in self.state.offers:
            self.offers.popleft()  # expired or revoked meanwhile
        if self.offers and roll < 0.55:
            offer = self.state.offers[self.offers.popleft()]
            if roll < 0.05:
                return OfferDeclined(offer.id, offer.agent_id)
            return OfferAccepted(offer.id, offer.agent_id)
        if self.assignments and roll < 0.8:
            assignment = self.state.assignments[self.assignments.popleft()]
            return AssignmentCompleted(assignment.id, assignment.agent_id)
        return self._arrival(now)

    def _arrival(self, now: datetime) -> Event:
        queue = self.rng.choice(self.queues)
        self.next_contact += 1
        ref = ContactRef(
            uuid.UUID(int=self.next_contact),
            f"c{self.next_contact}",
            self.rng.choice(sorted(queue.channels)),
            queue.id,
            queue.priority,
            now,
        )
        return ContactArrived(ref)

    def saw(self, decisions: Sequence[object]) -> None:
        for decision in decisions:
            if isinstance(decision, Offered):
                self.offers.append(decision.offer_id)
            elif isinstance(decision, Assigned):
                self.assignments.append(decision.assignment_id)


def run_core(state: RoutingState, rng: random.Random, events: int) -> tuple[Result, Result]:
    driver = Driver(state, rng)
    now = T0
    warm = Result("core: log in + accept (warm-up)", 0, 0, 0.0, [])
    started = time.perf_counter()
    for agent_id in list(state.agents):
        t = time.perf_counter_ns()
        decisions = decide(state, PresenceRequested(agent_id, Presence.AVAILABLE), now)
        apply(state, decisions)
        warm.latencies_ns.append(time.perf_counter_ns() - t)
        warm.events, warm.decisions = warm.events + 1, warm.decisions + len(decisions)
        driver.saw(decisions)
    while driver.offers:  # and accept what they were offered, so the mix starts in a steady state
        offer = state.offers[driver.offers.popleft()]
        t = time.perf_counter_ns()
        decisions = decide(state, OfferAccepted(offer.id, offer.agent_id), now)
        apply(state, decisions)
        warm.latencies_ns.append(time.perf_counter_ns() - t)
        warm.events, warm.decisions = warm.events + 1, warm.decisions + len(decisions)
        driver.saw(decisions)
    warm.seconds = time.perf_counter() - started
    mixed = Result("core: event mix, decide+apply", 0, 0, 0.0, [])
    started = time.perf_counter()
    for _ in range(events):
        now += timedelta(milliseconds=2)
        event = driver.next_event(now)
        t = time.perf_counter_ns()
        decisions = decide(state, event, now)
        apply(state, decisions)
        mixed.latencies_ns.append(time.perf_counter_ns() - t)
        mixed.events, mixed.decisions = mixed.events + 1, mixed.decisions + len(decisions)
        driver.saw(decisions)
    mixed.seconds = time.perf_counter() - started
    return warm, mixed


# ---- the baseline: the same decisions in PostgreSQL ----

SCHEMA = """
CREATE TABLE agents (id text PRIMARY KEY, presence text NOT NULL, idle_since timestamptz NOT NULL);
CREATE TABLE agent_queues (agent_id text, queue_id text, proficiency int, PRIMARY KEY (queue_id, agent_id));
CREATE TABLE agent_channels (agent_id text, channel text, capacity int, load int, PRIMARY KEY (agent_id, channel));
CREATE TABLE contacts (id uuid PRIMARY KEY, queue_id text, channel text, priority int, enqueued_at timestamptz,
                       status text, agent_id text);
"""
INDEXES = """
CREATE INDEX contacts_queued ON contacts (queue_id, channel, priority DESC, enqueued_at) WHERE status = 'queued';
CREATE INDEX agents_idle ON agents (idle_since) WHERE presence = 'available';
ANALYZE;
"""
ROUTE_CONTACT = """
SELECT a.id FROM agents a
JOIN agent_queues q ON q.agent_id = a.id AND q.queue_id = $1
JOIN agent_channels c ON c.agent_id = a.id AND c.channel = $2
WHERE a.presence = 'available' AND c.load < c.capacity
ORDER BY a.idle_since, q.proficiency DESC LIMIT 1
FOR UPDATE OF a, c SKIP LOCKED
"""
FILL_AGENT = """
SELECT w.id FROM contacts w
WHERE w.status = 'queued' AND w.queue_id = ANY($1::text[]) AND w.channel = ANY($2::text[])
ORDER BY w.priority DESC, w.enqueued_at LIMIT 1
FOR UPDATE SKIP LOCKED
"""


async def _offer(conn: asyncpg.Connection, contact_id: uuid.UUID, agent_id: str, channel: str) -> None:
    await conn.execute("UPDATE contacts SET status = 'offered', agent_id = $2 WHERE id = $1", contact_id, agent_id)
    await conn.execute(
        "UPDATE agent_channels SET load = load + 1 WHERE agent_id = $1 AND channel = $2", agent_id, channel
    )


async def run_baseline(url: str, state: RoutingState, contacts: int, events: int, rng: random.Random) -> Result:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    await conn.execute(SCHEMA)
    index = state.index()
    await conn.copy_records_to_table(
        "agents", records=[(a.id, "available", a.idle_since) for a in state.agents.values()]
    )
    await conn.copy_records_to_table(
        "agent_queues", records=[(a, q, p) for a, queues in index.eligible.items() for q, p in queues.items()]
    )
    await conn.copy_records_to_table(
        "agent_channels",
        records=[(a.id, c.value, n, 0) for a in state.agents.values() for c, n in a.capacity.items()],
    )
    waiting = list(state.waiting.values())[:contacts]
    await conn.copy_records_to_table(
        "contacts",
        records=[
            (w.ref.id, w.ref.queue_id, w.ref.channel.value, w.ref.priority, w.ref.enqueued_at, "queued", None)
            for w in waiting
        ],
    )
    await conn.execute(INDEXES)
    queues = list(state.queues.values())
    # start where the core's warm-up ends: every agent busy on every slot, the contacts waiting
    offered: deque[tuple[uuid.UUID, str, str]] = deque()
    busy = [
        (uuid.uuid4(), a.id, c.value) for a in state.agents.values() for c, n in a.capacity.items() for _ in range(n)
    ]
    rng.shuffle(busy)
    offered.extend(busy)
    await conn.copy_records_to_table("contacts", records=[(c, "q0", ch, 0, T0, "assigned", a) for c, a, ch in busy])
    await conn.execute("UPDATE agent_channels SET load = capacity")
    result = Result(f"baseline: PostgreSQL ({len(waiting):,} waiting)", 0, 0, 0.0, [])
    now = T0 + timedelta(hours=1)
    for n in range(events):
        now += timedelta(milliseconds=2)
        t = time.perf_counter_ns()
        async with conn.transaction():
            if offered and n % 2:  # an agent finishes its work and takes the next contact
                contact_id, agent_id, channel = offered.popleft()
                await conn.execute("UPDATE contacts SET status = 'done' WHERE id = $1", contact_id)
                await conn.execute(
                    "UPDATE agent_channels SET load = load - 1 WHERE agent_id = $1 AND channel = $2", agent_id, channel
                )
                await conn.execute("UPDATE agents SET idle_since = $2 WHERE id = $1", agent_id, now)
                found = await conn.fetchval(FILL_AGENT, list(index.eligible[agent_id]), [channel])
                if found is not None:
                    await _offer(conn, found, agent_id, channel)
                    offered.append((found, agent_id, channel))
            else:  # a contact arrives and goes to the best agent
                queue = rng.choice(queues)
                channel = rng.choice(sorted(queue.channels)).value
                contact_id = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO contacts VALUES ($1, $2, $3, $4, $5, 'queued', NULL)",
                    contact_id,
                    queue.id,
                    channel,
                    queue.priority,
                    now,
                )
                agent_id = await conn.fetchval(ROUTE_CONTACT, queue.id, channel)
                if agent_id is not None:
                    await _offer(conn, contact_id, agent_id, channel)
                    offered.append((contact_id, agent_id, channel))
        result.latencies_ns.append(time.perf_counter_ns() - t)
        result.events += 1
        result.decisions += 2
    result.seconds = sum(result.latencies_ns) / 1e9
    await conn.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=15_000)
    parser.add_argument("--contacts", type=int, default=500_000, help="waiting contacts at the start")
    parser.add_argument("--queues", type=int, default=200)
    parser.add_argument("--skills", type=int, default=64)
    parser.add_argument("--events", type=int, default=200_000, help="events in the timed mix")
    parser.add_argument("--baseline-contacts", type=int, default=None, help="waiting rows in PostgreSQL (all)")
    parser.add_argument("--baseline-events", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-baseline", action="store_true", help="measure the core only, skip PostgreSQL")
    args = parser.parse_args()

    started = time.perf_counter()
    state = build_state(
        _rng(args.seed), agents=args.agents, contacts=args.contacts, queues=args.queues, skills=args.skills
    )
    built = time.perf_counter()
    state.index()
    indexed = time.perf_counter()
    gc.collect()
    gc.freeze()  # the long-lived state is never garbage: keep the collector from walking it again and again
    print(
        f"state: {args.agents:,} agents, {args.contacts:,} waiting, {args.queues} queues, {args.skills} skills; "
        f"built in {built - started:.1f} s, indexed in {indexed - built:.1f} s"
    )
    warm, mixed = run_core(state, _rng(args.seed + 1), args.events)
    for result in (warm, mixed):
        result.seconds = sum(result.latencies_ns) / 1e9  # the core's own time, not the event generator's
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"after the mix: {len(state.waiting):,} waiting, {len(state.offers):,} offers, "
        f"{len(state.assignments):,} assignments; peak RSS {rss_mb:,.0f} MB"
    )

    if args.no_baseline:
        print()
        print(f"{'':<34} {'events/s':>10} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for result in (warm, mixed):
            print(result.row())
        return
    baseline_state = build_state(
        _rng(args.seed), agents=args.agents, contacts=args.contacts, queues=args.queues, skills=args.skills
    )
    root = Path(tempfile.mkdtemp(prefix="kefu-bench-router-"))
    try:
        with EmbeddedPostgres(root / "data") as server:
            loaded = time.perf_counter()
            baseline = asyncio.run(
                run_baseline(
                    server.url(),
                    baseline_state,
                    args.baseline_contacts or args.contacts,
                    args.baseline_events,
                    _rng(args.seed + 2),
                )
            )
            print(f"baseline loaded and ran in {time.perf_counter() - loaded:.1f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"{'':<34} {'events/s':>10} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for result in (warm, mixed, baseline):
        print(result.row())
    ratio = (mixed.events / mixed.seconds) / (baseline.events / baseline.seconds)
    print(f"\ncore vs baseline: {ratio:,.0f}x events/s; peak RSS {rss_mb:,.0f} MB")


if __name__ == "__main__":
    main()
