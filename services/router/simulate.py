"""``kefu simulate``: the real decision core under Poisson arrivals, checked against queueing theory.

An M/M/c queue: one queue, c identical agents with one phone slot each, arrivals at rate λ, exponential
handle times of mean 1/μ, offered load a = λ/μ Erlangs. Every event goes through ``decide`` and ``apply``
as the service drives them, and every offer is accepted at once, so the core's own choices alone decide
who waits and for how long. Erlang C gives the exact steady-state answer to compare with; with
``--priority-share`` that fraction of the arrivals has a higher ``priority`` (the core serves the higher
number first), and Cobham's non-preemptive priority waits are the answer for each class (``queueing``).

A contact *waited* if no offer was made to it in the decisions for its own arrival; its wait is the core's
own ``Assigned.at − enqueued_at``.

Every measured figure comes with a 95 % confidence interval from **batch means** (``batch_means``) of the run's
values in arrival order (per class, for a class's wait). The run starts empty and no warm-up is cut: at 100,000
arrivals the start's bias is far inside the interval, while a run of a few thousand arrivals, whose batches are not
much longer than the queue's memory, gets a rougher interval. A figure is *ok* when the theoretical value lies
inside its interval, widened to a small absolute floor (``--tolerance``: in P(wait), and in mean handle times for a
wait) so that a very long run is not failed on rounding; a correct core is therefore *off* on a given figure about
1 time in 20. The command itself (options, table, verdict) is ``simulate_cli``.
"""

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from contracts import Channel
from services.router.batch_means import BATCHES, Estimate, batch_means
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
from services.router.queueing import erlang_c, erlang_c_mean_wait, erlang_c_service_level, priority_mean_waits

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
QUEUE_ID = "simulated"
CHANNEL = Channel.PHONE
HIGH, LOW = 1, 0  # the two priorities of a two-class run: the core serves the higher number first
PROGRESS_EVERY = 1_000
# below this many arrivals a batch, batches are not much longer than a busy queue's memory (nor its empty start)
ROUGH_BATCH = 1_000


class InvariantBroken(Exception):
    """The decision core did something an M/M/c queue with a FIFO (or FIFO-within-priority) discipline never does."""


@dataclass(frozen=True, slots=True)
class Census:
    """Where every contact was the instant the last one arrived."""

    arrivals: int
    completed: int
    waiting: int
    in_service: int


@dataclass(frozen=True, slots=True)
class ClassResult:
    """One priority class of a two-class run: its share of the arrivals, measured wait, and Cobham's."""

    priority: int
    arrivals: int
    mean_wait: Estimate
    cobham_mean_wait: float


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What one run measured, next to what Erlang C (and, with two classes, Cobham) predicts for it."""

    erlangs: float
    agents: int
    handle_seconds: float
    within_seconds: float
    arrivals: int
    waited: int
    completed: int
    p_wait: Estimate
    mean_wait: Estimate
    service_level: Estimate
    classes: tuple[ClassResult, ...]  # highest priority first; empty in a one-class run
    census: Census

    @property
    def erlang_c(self) -> float:
        return erlang_c(self.erlangs, self.agents)

    @property
    def erlang_c_mean_wait(self) -> float:
        return erlang_c_mean_wait(self.erlangs, self.agents, self.handle_seconds)

    @property
    def erlang_c_service_level(self) -> float:
        return erlang_c_service_level(self.erlangs, self.agents, self.handle_seconds, self.within_seconds)

    def misses(self, tolerance: float) -> list[str]:
        """Each judged figure whose theory lies outside its interval (floored at ``tolerance``), described."""
        wait_floor = tolerance * self.handle_seconds
        checks = [("P(wait)", self.p_wait, self.erlang_c, tolerance, "Erlang C")]
        if self.classes:
            checks += [
                (f"Wq priority {k.priority}", k.mean_wait, k.cobham_mean_wait, wait_floor, "Cobham")
                for k in self.classes
            ]
        else:
            checks.append(("Wq", self.mean_wait, self.erlang_c_mean_wait, wait_floor, "Erlang C"))
        return [
            f"c={self.agents}: {name} {measured.mean:.4g} ± {measured.half_width:.2g} misses {theory} {expected:.4g}"
            for name, measured, expected, floor, theory in checks
            if not measured.covers(expected, floor)
        ]


def initial_state(agents: int) -> RoutingState:
    """One queue without skill requirements, and ``agents`` available agents with one phone slot each."""
    queue = Queue(QUEUE_ID, "Simulated", frozenset({CHANNEL}), {}, 0, timedelta(seconds=20))
    state = RoutingState(queues={QUEUE_ID: queue})
    for n in range(agents):
        agent_id = f"agent-{n}"
        state.agents[agent_id] = Agent(agent_id, agent_id, ("tier1",), {}, {CHANNEL: 1}, Presence.AVAILABLE, EPOCH)
    return state


class _Run:
    """The event loop: arrivals come from the caller, completions from a heap of (time, seq, assignment, agent).

    Contacts 0 … ``counted`` − 1 are measured; the caller keeps arrivals coming past them until all have been
    served, since with priorities a later arrival of a higher class still delays an earlier waiting contact.
    """

    def __init__(self, state: RoutingState, rng: random.Random, handle_seconds: float, counted: int) -> None:
        self.state = state
        self.rng = rng
        self.handle_seconds = handle_seconds
        self.counted = counted
        self.completions: list[tuple[float, int, UUID, str]] = []
        self.seq = 0
        self.arrived = 0
        self.completed = 0
        self.counted_completed = 0
        self.counted_unserved = 0
        self.waited: list[bool] = []
        self.waits: list[float] = []
        self.priorities: list[int] = []
        self.waiting_by_priority: dict[int, int] = {}
        self.last_served: dict[int, int] = {}

    def arrive(self, n: int, t: float, priority: int) -> None:
        ref = ContactRef(UUID(int=n + 1), f"simulated:{n}", CHANNEL, QUEUE_ID, priority, EPOCH + timedelta(seconds=t))
        self.arrived += 1
        self.waited.append(False)
        self.waits.append(0.0)
        self.priorities.append(priority)
        self.counted_unserved += n < self.counted
        decisions = self._step(ContactArrived(ref), t)
        if not any(isinstance(d, Offered) and d.contact.id == ref.id for d in decisions):
            self.waited[n] = True
            self.waiting_by_priority[priority] = self.waiting_by_priority.get(priority, 0) + 1
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
                case Completed(contact=contact):
                    self.completed += 1
                    self.counted_completed += contact.id.int - 1 < self.counted
        return decisions

    def _start_service(self, assigned: Assigned, t: float) -> None:
        n = assigned.contact.id.int - 1
        priority = self.priorities[n]  # the class it arrived in, whatever the core made of it
        last = self.last_served.get(priority, -1)
        if n <= last:
            raise InvariantBroken(
                f"contact {n} served after contact {last} of its priority: not first come, first served"
            )
        if self.waited[n]:
            self.waiting_by_priority[priority] -= 1
        if any(count and p > priority for p, count in self.waiting_by_priority.items()):
            raise InvariantBroken(f"contact {n} of priority {priority} served while a higher priority waits")
        self.last_served[priority] = n
        self.counted_unserved -= n < self.counted
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


def check_inputs(*, erlangs: float, agents: int, arrivals: int, priority_share: float | None) -> None:
    """Raise ``ValueError`` for a run that has no steady state or too few arrivals for an interval."""
    if arrivals < BATCHES:
        raise ValueError(f"need at least {BATCHES} arrivals, got {arrivals}")
    if not 0 < erlangs < agents:
        raise ValueError(f"need 0 < erlangs < agents for a steady state, got a={erlangs}, c={agents}")
    if priority_share is not None and not 0 < priority_share < 1:
        raise ValueError(f"need 0 < priority share < 1, got {priority_share}")


def simulate(
    *,
    erlangs: float,
    agents: int,
    arrivals: int,
    seed: int = 1,
    handle_seconds: float = 180.0,
    within_seconds: float = 20.0,
    priority_share: float | None = None,
    advance: Callable[[int], object] | None = None,
) -> SimulationResult:
    """Run ``arrivals`` Poisson arrivals through the decision core and measure them once every one is served.

    ``priority_share``: the fraction of arrivals given the higher priority (a two-class run), else one class.
    ``advance`` is told, every ``PROGRESS_EVERY`` arrivals, how many more have arrived (a progress bar's update).
    """
    check_inputs(erlangs=erlangs, agents=agents, arrivals=arrivals, priority_share=priority_share)
    rng = random.Random(seed)  # noqa: S311 -- a reproducible simulation wants a seeded generator, not secrets
    run = _Run(initial_state(agents), rng, handle_seconds, arrivals)
    arrival_rate = erlangs / handle_seconds

    # the classes come from a generator of their own, so arrival and handle times are those of the one-class run with
    # the same seed: a core that serves priorities without ever idling an agent gives it the very same P(wait)
    classes_rng = random.Random(f"{seed}:priority")  # noqa: S311

    def priority() -> int:
        return LOW if priority_share is None or classes_rng.random() >= priority_share else HIGH

    t = 0.0
    for n in range(arrivals):
        t += rng.expovariate(arrival_rate)
        run.complete_until(t)
        run.arrive(n, t, priority())
        if advance is not None and (n + 1) % PROGRESS_EVERY == 0:
            advance(PROGRESS_EVERY)
    if advance is not None:
        advance(arrivals % PROGRESS_EVERY)
    census = run.census()
    # arrivals go on, unmeasured, until every measured contact is served: stopping them would shorten the wait
    # of a low-priority contact still queued, whom later high-priority arrivals would have overtaken
    n = arrivals
    while run.counted_unserved:
        t += rng.expovariate(arrival_rate)
        run.complete_until(t)
        run.arrive(n, t, priority())
        n += 1
    run.complete_until(math.inf)
    waited, waits = run.waited[:arrivals], run.waits[:arrivals]
    classes: tuple[ClassResult, ...] = ()
    if priority_share is not None:
        cobham = priority_mean_waits(erlangs, agents, handle_seconds, [priority_share, 1 - priority_share])
        by_class = [[w for w, p in zip(waits, run.priorities[:arrivals], strict=True) if p == k] for k in (HIGH, LOW)]
        classes = tuple(
            ClassResult(k, len(ws), batch_means(ws, f"arrivals of priority {k}"), theory)
            for k, ws, theory in zip((HIGH, LOW), by_class, cobham, strict=True)
        )
    return SimulationResult(
        erlangs=erlangs,
        agents=agents,
        handle_seconds=handle_seconds,
        within_seconds=within_seconds,
        arrivals=arrivals,
        waited=sum(waited),
        completed=run.counted_completed,
        p_wait=batch_means([float(w) for w in waited]),
        mean_wait=batch_means(waits),
        service_level=batch_means([float(w <= within_seconds) for w in waits]),
        classes=classes,
        census=census,
    )
