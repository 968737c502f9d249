"""``kefu simulate``: the real decision core under Poisson arrivals, checked against Erlang C.

An M/M/c queue: one queue, c identical agents with one phone slot each, arrivals at rate λ, exponential
handle times of mean 1/μ, offered load a = λ/μ Erlangs. Every event goes through ``decide`` and ``apply``
as the service drives them, and every offer is accepted at once, so the core's own choices alone decide
who waits and for how long. Erlang C gives the exact steady-state answer to compare with.

A contact *waited* if no offer was made to it in the decisions for its own arrival.
"""

import argparse
import heapq
import math
import random
import statistics
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from contracts import Channel
from services.router.domain.decide import apply, decide
from services.router.domain.decisions import (
    Assigned,
    AssignmentCompleted,
    Completed,
    ContactArrived,
    Decision,
    Event,
    OfferAccepted,
    Offered,
)
from services.router.domain.model import Agent, ContactRef, Presence, Queue, RoutingState

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
QUEUE_ID = "simulated"
CHANNEL = Channel.PHONE
BATCHES = 20
# Student's t at 97.5 % for BATCHES - 1 = 19 degrees of freedom: a 95 % interval from batch means
T_975_19 = 2.093


class InvariantBroken(Exception):
    """The decision core did something an M/M/c queue with a FIFO discipline never does."""


def erlang_b(a: float, c: int) -> float:
    """Erlang B blocking probability, by the recursion B(k) = a·B(k-1) / (k + a·B(k-1)).

    The recursion never forms a^c or c!, so it stays exact for hundreds of agents where the textbook
    formula overflows.
    """
    if c < 0 or a < 0:
        raise ValueError(f"need a >= 0 and c >= 0, got a={a}, c={c}")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(a: float, c: int) -> float:
    """Erlang C: the probability that an arrival waits, in M/M/c with offered load ``a`` Erlangs."""
    if c < 1 or a < 0:
        raise ValueError(f"need a >= 0 and c >= 1, got a={a}, c={c}")
    if a >= c:
        return 1.0  # no steady state: the queue grows without bound and everyone waits
    b = erlang_b(a, c)
    return c * b / (c - a * (1 - b))


def erlang_c_mean_wait(a: float, c: int, handle_seconds: float) -> float:
    """Mean wait over all arrivals, P(wait) / (c·μ − λ), in seconds."""
    return erlang_c(a, c) * handle_seconds / (c - a)


def erlang_c_service_level(a: float, c: int, handle_seconds: float, within_seconds: float) -> float:
    """Share of arrivals answered within ``within_seconds``: 1 − P(wait)·e^(−(c·μ − λ)·T)."""
    return 1 - erlang_c(a, c) * math.exp(-(c - a) * within_seconds / handle_seconds)


@dataclass(frozen=True, slots=True)
class Census:
    """Where every contact was the instant the last one arrived."""

    arrivals: int
    completed: int
    waiting: int
    in_service: int


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What one run measured, next to what Erlang C predicts for it."""

    erlangs: float
    agents: int
    handle_seconds: float
    within_seconds: float
    arrivals: int
    waited: int
    completed: int
    p_wait_half_width: float
    mean_wait: float
    answered_within: int
    census: Census

    @property
    def p_wait(self) -> float:
        return self.waited / self.arrivals

    @property
    def erlang_c(self) -> float:
        return erlang_c(self.erlangs, self.agents)

    @property
    def difference(self) -> float:
        return self.p_wait - self.erlang_c

    @property
    def erlang_c_mean_wait(self) -> float:
        return erlang_c_mean_wait(self.erlangs, self.agents, self.handle_seconds)

    @property
    def service_level(self) -> float:
        return self.answered_within / self.arrivals

    @property
    def erlang_c_service_level(self) -> float:
        return erlang_c_service_level(self.erlangs, self.agents, self.handle_seconds, self.within_seconds)


def initial_state(agents: int) -> RoutingState:
    """One queue without skill requirements, and ``agents`` available agents with one phone slot each."""
    queue = Queue(QUEUE_ID, "Simulated", frozenset({CHANNEL}), {}, 0, timedelta(seconds=20))
    state = RoutingState(queues={QUEUE_ID: queue})
    for n in range(agents):
        agent_id = f"agent-{n}"
        state.agents[agent_id] = Agent(agent_id, agent_id, ("tier1",), {}, {CHANNEL: 1}, Presence.AVAILABLE, EPOCH)
    return state


class _Run:
    """The event loop: arrivals come from the caller, completions from a heap of (time, seq, assignment, agent)."""

    def __init__(self, state: RoutingState, rng: random.Random, handle_seconds: float, arrivals: int) -> None:
        self.state = state
        self.rng = rng
        self.handle_seconds = handle_seconds
        self.completions: list[tuple[float, int, UUID, str]] = []
        self.seq = 0
        self.arrived = 0
        self.completed = 0
        self.waited = [False] * arrivals
        self.waits = [0.0] * arrivals
        self.last_served = -1

    def arrive(self, n: int, t: float) -> None:
        ref = ContactRef(UUID(int=n + 1), f"simulated:{n}", CHANNEL, QUEUE_ID, 0, EPOCH + timedelta(seconds=t))
        self.arrived += 1
        decisions = self._step(ContactArrived(ref), t)
        self.waited[n] = not any(isinstance(d, Offered) and d.contact.id == ref.id for d in decisions)
        self._check()

    def complete_until(self, until: float) -> None:
        while self.completions and self.completions[0][0] <= until:
            t, _, assignment_id, agent_id = heapq.heappop(self.completions)
            self._step(AssignmentCompleted(assignment_id, agent_id), t)
            self._check()

    def _step(self, event: Event, t: float) -> list[Decision]:
        decisions = decide(self.state, event, EPOCH + timedelta(seconds=t))
        apply(self.state, decisions)
        for decision in decisions:
            match decision:
                case Offered(offer_id=offer_id, agent_id=agent_id):
                    # the agent's desktop accepts at once: waiting is the core's doing, not the agent's
                    self._step(OfferAccepted(offer_id, agent_id), t)
                case Assigned():
                    self._start_service(decision, t)
                case Completed():
                    self.completed += 1
        return decisions

    def _start_service(self, assigned: Assigned, t: float) -> None:
        n = assigned.contact.id.int - 1
        if n <= self.last_served:
            raise InvariantBroken(f"contact {n} served after contact {self.last_served}: not first come, first served")
        self.last_served = n
        # the core's own timestamps, so a wrong enqueue time or clock in the core shows up here
        self.waits[n] = (assigned.at - assigned.contact.enqueued_at).total_seconds()
        self.seq += 1
        done = t + self.rng.expovariate(1 / self.handle_seconds)
        heapq.heappush(self.completions, (done, self.seq, assigned.assignment_id, assigned.agent_id))

    def _check(self) -> None:
        state = self.state
        if state.offers:
            raise InvariantBroken(f"{len(state.offers)} offers left pending although every offer is accepted")
        if self.completed + len(state.waiting) + len(state.assignments) != self.arrived:
            raise InvariantBroken(
                f"completed {self.completed} + waiting {len(state.waiting)} + in service "
                f"{len(state.assignments)} != arrivals {self.arrived}"
            )
        busy = {a.agent_id for a in state.assignments.values()}
        if len(busy) != len(state.assignments):
            raise InvariantBroken("an agent with one slot holds two assignments")
        for agent in state.agents.values():
            load = agent.load[CHANNEL]
            if load != (agent.id in busy):
                raise InvariantBroken(f"agent {agent.id} has load {load} but {int(agent.id in busy)} assignments")
        if state.waiting and len(busy) < len(state.agents):
            raise InvariantBroken(f"{len(state.waiting)} contacts wait while an agent is free")

    def census(self) -> Census:
        return Census(self.arrived, self.completed, len(self.state.waiting), len(self.state.assignments))


def simulate(
    *,
    erlangs: float,
    agents: int,
    arrivals: int,
    seed: int = 1,
    handle_seconds: float = 180.0,
    within_seconds: float = 20.0,
) -> SimulationResult:
    """Run ``arrivals`` Poisson arrivals through the decision core, then serve whoever is left."""
    if arrivals < BATCHES:
        raise ValueError(f"need at least {BATCHES} arrivals, got {arrivals}")
    if not 0 < erlangs < agents:
        raise ValueError(f"need 0 < erlangs < agents for a steady state, got a={erlangs}, c={agents}")
    rng = random.Random(seed)  # noqa: S311 -- a reproducible simulation wants a seeded generator, not secrets
    run = _Run(initial_state(agents), rng, handle_seconds, arrivals)
    arrival_rate = erlangs / handle_seconds
    t = 0.0
    for n in range(arrivals):
        t += rng.expovariate(arrival_rate)
        run.complete_until(t)
        run.arrive(n, t)
    census = run.census()
    # FIFO: later arrivals never change an earlier contact's wait, so draining gives every wait exactly
    run.complete_until(math.inf)
    return SimulationResult(
        erlangs=erlangs,
        agents=agents,
        handle_seconds=handle_seconds,
        within_seconds=within_seconds,
        arrivals=arrivals,
        waited=sum(run.waited),
        completed=run.completed,
        p_wait_half_width=_batch_half_width(run.waited),
        mean_wait=statistics.fmean(run.waits),
        answered_within=sum(w <= within_seconds for w in run.waits),
        census=census,
    )


def _batch_half_width(waited: list[bool]) -> float:
    # successive waits are correlated, so a binomial interval would be far too narrow; batch means are not
    size = len(waited) // BATCHES
    means = [sum(waited[i * size : (i + 1) * size]) / size for i in range(BATCHES)]
    return T_975_19 * statistics.stdev(means) / math.sqrt(BATCHES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``kefu simulate``."""
    parser.add_argument("--erlangs", type=float, default=2.5, help="offered load a = λ/μ (default 2.5)")
    parser.add_argument("--agents", type=int, nargs="+", default=[3, 4, 5, 6], help="values of c (default 3 4 5 6)")
    parser.add_argument("--arrivals", type=int, default=100_000, help="arrivals per run (default 100000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--handle-seconds", type=float, default=180.0, help="mean handle time 1/μ (default 180)")
    parser.add_argument("--within", type=float, default=20.0, help="service-level threshold T in s (default 20)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="allowed |P(wait) − Erlang C| (default 0.01)")


def main(args: argparse.Namespace) -> int:
    """Print one row per agent count; exit 1 when any P(wait) misses Erlang C by more than the tolerance."""
    try:
        results = [
            simulate(
                erlangs=args.erlangs,
                agents=c,
                arrivals=args.arrivals,
                seed=args.seed,
                handle_seconds=args.handle_seconds,
                within_seconds=args.within,
            )
            for c in args.agents
        ]
    except ValueError as exc:
        print(f"kefu simulate: {exc}", file=sys.stderr)
        return 2
    print(
        f"M/M/c through the decision core: a = {args.erlangs:g} Erlangs, mean handle {args.handle_seconds:g} s, "
        f"{args.arrivals} arrivals per row, seed {args.seed}"
    )
    within = f"SL({args.within:g}s)"
    print(
        f"{'c':>3} {'arrivals':>9} {'P(wait)':>8} {'±95%':>6} {'ErlangC':>8} {'diff':>7} "
        f"{'wait(s)':>8} {'ErlangC':>8} {within:>9} {'ErlangC':>8}"
    )
    failed = False
    for r in results:
        failed |= abs(r.difference) > args.tolerance
        print(
            f"{r.agents:>3} {r.arrivals:>9} {r.p_wait:>8.4f} {r.p_wait_half_width:>6.4f} {r.erlang_c:>8.4f} "
            f"{r.difference:>+7.4f} {r.mean_wait:>8.2f} {r.erlang_c_mean_wait:>8.2f} "
            f"{r.service_level:>9.4f} {r.erlang_c_service_level:>8.4f}"
        )
    if failed:
        print(f"kefu simulate: P(wait) differs from Erlang C by more than {args.tolerance}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="kefu simulate", description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
