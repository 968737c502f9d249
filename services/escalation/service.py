"""The escalation service's handlers: contact and routing events, due timers and requests by hand.

Each handler is one transaction: the facts change, the policy engine runs on the new facts, and what it decides
(cases, routing commands and case events through the outbox, notifications, timers) commits with it or not at
all. Redelivered events are applied once (their ids are keys), a trigger fires once per contact
(``contact_facts.fired``, and a unique case per contact and trigger), so replaying a topic changes nothing.

A timer is a wake-up call: when it comes due the engine runs again at its due time (or later) inside the
timer's transaction, so a contact answered meanwhile produces nothing. An acknowledgement timer climbs its case
a level when nobody acknowledged it.
"""

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import ContactEvent, RoutingEvent, RoutingEventType
from contracts.escalations import EscalationStatus
from contracts.routing import CommandPrecondition
from kefu.logs import bind
from services.escalation import access
from services.escalation.adapters import cases, facts
from services.escalation.adapters.notifier import enqueue
from services.escalation.adapters.store import record_routing_event
from services.escalation.adapters.timers import Timer, TimerStore, timer_row
from services.escalation.domain import triggers
from services.escalation.domain.cases import Action
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.domain.triggers import ContactFacts, Escalation, evaluate
from services.escalation.exceptions import AlreadyEscalated

log = logging.getLogger(__name__)

POLICY = "policy"
"""The actor the audit trail names for what the policy engine did."""
ROUTER = "router"
"""The actor the audit trail names for a case cancelled because the router refused its command."""


def move(escalation: Escalation) -> cases.Move:
    """Where ``escalation`` sends the contact."""
    return cases.Move(
        escalation.target, escalation.group, escalation.queue, escalation.level, escalation.priority, escalation.agent
    )


@dataclass
class Committed:
    """What one transaction wrote that someone must be woken for, once it has committed."""

    conn: AsyncConnection
    outbound: bool = False  # case events, routing commands or notifications: the relay and the notifier
    new_timers: int = 0  # timers created: one may be due before the runner's next look


class Escalator:
    """Applies events and timers to contact facts and acts on the policy's decisions."""

    def __init__(
        self,
        engine: AsyncEngine,
        policy: EscalationPolicy,
        timers: TimerStore,
        *,
        committed: Callable[[Committed], None] = lambda _: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self.policy = policy
        self._timers = timers
        self._committed = committed  # wakes the outbox relay and the notifier, or the timer runner, as needed
        self._clock = clock

    async def handle_contact(self, event: ContactEvent) -> None:
        """A customer message: record it once on its contact, then evaluate the contact."""
        async with self._engine.begin() as conn:
            tx = Committed(conn)
            contact_id = await facts.apply_message(conn, event)
            bind(contact_id=contact_id)
            if contact_id is not None:
                await self._evaluate(tx, contact_id, self._clock())
        self._committed(tx)

    async def handle_routing(self, event: RoutingEvent) -> None:
        """A routing step: fold it once into the contact's facts, then evaluate the contact."""
        async with self._engine.begin() as conn:
            tx = Committed(conn)
            if not await record_routing_event(conn, event):
                return
            await facts.apply_routing(conn, event)
            if event.type is RoutingEventType.COMMAND_REFUSED:
                await self._refused(tx, event)
            if event.type.value in triggers.CLOSED:
                # nothing can fire for a closed contact; its wake-up calls would find nothing to do
                await self._timers.cancel_for_contact(event.contact_id, conn=conn)
            else:
                now = self._clock()
                await self._evaluate(tx, event.contact_id, now)
                if event.type is RoutingEventType.QUEUED:
                    await self._evaluate_latest_of_customer(tx, event.contact_id, now)
        self._committed(tx)

    async def _refused(self, tx: Committed, event: RoutingEvent) -> None:
        """The router refused a case's command as stale: the case did not act, so it is cancelled and its trigger
        forgotten; the evaluation that follows decides again on the newer facts (and may open it again)."""
        if event.command_id is None:
            return
        case = await cases.find_by_command(tx.conn, event.contact_id, event.command_id)
        if case is None or case["status"] not in (EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED):
            return
        reason = f"the router refused its routing command: {event.reason or 'its precondition no longer held'}"
        log.info("escalation case %s: %s", case["case_id"], reason)
        await cases.act(
            tx.conn, uuid.UUID(case["case_id"]), Action.CANCEL, actor=ROUTER, note=reason, now=self._clock()
        )
        await facts.unmark_fired(tx.conn, event.contact_id, case["trigger"])
        await self._timers.cancel_for_contact(
            event.contact_id, prefix=f"{event.contact_id}/{case['trigger']}/ack.", conn=tx.conn
        )
        tx.outbound = True

    async def _evaluate_latest_of_customer(self, tx: Committed, contact_id: uuid.UUID, now: datetime) -> None:
        """A contact began: its customer's latest contact may now be a repeat, even if this one came in late.

        Rows are locked older first, then the latest, so two of these never wait on each other.
        """
        repeat = self.policy.triggers.repeat_contact
        if repeat is None:
            return
        latest = await facts.latest_of_customer(tx.conn, contact_id, now - timedelta(hours=repeat.within_hours))
        if latest is not None and latest != contact_id:
            await self._evaluate(tx, latest, now)

    async def on_timer(self, timer: Timer, conn: AsyncConnection) -> None:
        """A due timer, inside the runner's transaction: evaluate again, or climb an unacknowledged case.

        The runner wakes the outbox relay and the notifier after its commit, and looks for its own next timer.
        """
        if timer.contact_id is None:
            log.warning("timer %s has no contact; nothing to do", timer.key)
            return
        # the database said it is due; this clock may lag a little, and before the due time nothing would fire
        now = max(self._clock(), timer.due_at)
        trigger = timer.payload.get("trigger")
        if timer.kind.startswith("ack.") and isinstance(trigger, str):
            await self._climb(Committed(conn), timer.contact_id, trigger, now)
        else:
            await self._evaluate(Committed(conn), timer.contact_id, now)

    async def escalate_by_hand(
        self,
        *,
        contact_id: uuid.UUID,
        target: str,
        reason: str,
        evidence: dict[str, Any],
        priority: int | None,
        actor: str,
        holder_check: Callable[[str | None], None] | None = None,
    ) -> uuid.UUID:
        """Open a manual case (``TargetNotAllowed``, ``AlreadyEscalated``); return its id.

        ``holder_check`` (an agent asking) is called with the agent holding the contact, the contact's facts locked,
        and raises to refuse; then the routing command assumes the contact stays with that assignment, so the router
        refuses it if the contact moved on meanwhile.
        """
        now = self._clock()
        async with self._engine.begin() as conn:
            tx = Committed(conn)
            known = await facts.load(conn, contact_id)
            precondition = None
            if holder_check is not None:
                holder_check(await access.holder(conn, contact_id) if known is not None else None)
                precondition = None if known is None else await self._assumed(conn, known)
            # a contact this service has not seen yet (its events still on the way) can be escalated all the same
            decision = triggers.manual(
                known or ContactFacts(contact_id, queue="", tier="standard", queued_at=now),
                self.policy,
                target=target,
                reason=reason,
            )
            if priority is not None:
                decision = replace(decision, priority=priority)
            case_id = await self._open(
                tx, contact_id, decision, now, actor=actor, evidence=evidence, precondition=precondition
            )
            if case_id is None:
                raise AlreadyEscalated(f"contact {contact_id} was already escalated to {target}")
            if known is not None:
                await facts.mark_fired(conn, contact_id, [decision.trigger])
        self._committed(tx)
        return case_id

    async def _evaluate(self, tx: Committed, contact_id: uuid.UUID, now: datetime) -> None:
        repeat = self.policy.triggers.repeat_contact
        since = None if repeat is None else now - timedelta(hours=repeat.within_hours)
        known = await facts.load(tx.conn, contact_id, customer_contacts_since=since)
        if known is None:
            return
        result = evaluate(known, self.policy, now)
        assumed = None
        if any(not d.warning_only for d in result.escalations):
            assumed = await self._assumed(tx.conn, known)
        for decision in result.escalations:
            if decision.warning_only:
                await self._notify(
                    tx,
                    decision.target,
                    f"{contact_id}/{decision.trigger}",
                    # an SLA warning, or an escalation that would have moved the contact down: told, moving nothing
                    _payload(
                        "sla.warning" if decision.trigger.endswith(".warn") else "escalation.notice",
                        contact_id,
                        decision,
                        now,
                    ),
                )
            else:
                evidence = {"evidence": decision.evidence}
                await self._open(tx, contact_id, decision, now, actor=POLICY, evidence=evidence, precondition=assumed)
        await facts.mark_fired(tx.conn, contact_id, [d.trigger for d in result.escalations])
        await self._schedule(tx, contact_id, result.timers)

    async def _open(
        self,
        tx: Committed,
        contact_id: uuid.UUID,
        decision: Escalation,
        now: datetime,
        *,
        actor: str,
        evidence: dict[str, Any],
        precondition: CommandPrecondition | None = None,
    ) -> uuid.UUID | None:
        """Open a case and send its command; a policy case whose command was refused opens again."""
        reason = decision.evidence
        if decision.agent is not None:
            reason = f"{reason} (owning TAM {decision.agent})"
        case_id = await cases.open_case(
            tx.conn,
            contact_id=contact_id,
            trigger=decision.trigger,
            move=move(decision),
            reason=reason,
            evidence=evidence,
            actor=actor,
            now=now,
            precondition=precondition,
            reopen=actor == POLICY,
        )
        if case_id is None:
            return None
        tx.outbound = True
        payload = {**_payload("escalation.opened", contact_id, decision, now), "case_id": str(case_id)}
        await self._notify(tx, decision.target, f"{case_id}/{decision.level}", payload)
        timer = triggers.ack_timer(contact_id, decision, self.policy, now)
        await self._schedule(tx, contact_id, [timer] if timer is not None else [])
        return case_id

    async def _climb(self, tx: Committed, contact_id: uuid.UUID, trigger: str, now: datetime) -> None:
        known = await facts.load(tx.conn, contact_id)  # facts before the case: the order every handler locks in
        case = await cases.find(tx.conn, contact_id, trigger)
        if case is None or case["status"] != EscalationStatus.OPEN:
            return  # acknowledged, resolved or cancelled in time
        current = Escalation(
            trigger, case["target"], case["level"], case["target"], "", case["priority"], case["reason"]
        )
        facts_now = known or ContactFacts(contact_id, queue="", tier="standard", queued_at=now)
        nxt = triggers.climb(facts_now, current, self.policy)
        case_id = uuid.UUID(case["case_id"])
        if nxt is None:
            # the top level (or a closed contact): say it again, louder, but nobody is left to climb to
            payload = {**_payload("escalation.unacknowledged", contact_id, current, now), "case_id": str(case_id)}
            await self._notify(tx, current.target, f"{case_id}/{current.level}/unacknowledged", payload)
            return
        assumed = None  # a case opened by hand moves the contact wherever it is: a person asked for it
        if known is not None and case["created_by"] == POLICY:
            assumed = await self._assumed(tx.conn, known)
        await cases.climb(tx.conn, case_id, move(nxt), reason=nxt.evidence, now=now, precondition=assumed)
        tx.outbound = True
        payload = {**_payload("escalation.climbed", contact_id, nxt, now), "case_id": str(case_id)}
        await self._notify(tx, nxt.target, f"{case_id}/{nxt.level}", payload)
        timer = triggers.ack_timer(contact_id, nxt, self.policy, now)
        await self._schedule(tx, contact_id, [timer] if timer is not None else [])

    @staticmethod
    async def _assumed(conn: AsyncConnection, known: ContactFacts) -> CommandPrecondition | None:
        """What a command decided on ``known`` assumes: the router refuses it once the contact has moved on."""
        assignment = await facts.current_assignment(conn, known.contact_id) if known.status == "assigned" else None
        return triggers.assumed(known, assignment)

    async def _notify(self, tx: Committed, target: str, message_id: str, payload: dict[str, Any]) -> None:
        """One notification per webhook of ``target``; the message id makes a replay notify once."""
        configured = self.policy.targets.get(target)
        for hook in configured.notify if configured is not None else []:
            tx.outbound = True
            await enqueue(
                tx.conn, target=hook.name, url=str(hook.url), payload=payload, message_id=f"{message_id}/{hook.name}"
            )

    async def _schedule(self, tx: Committed, contact_id: uuid.UUID, timers: Sequence[triggers.Timer]) -> None:
        rows = [
            timer_row(
                t.key, t.kind, t.due_at, contact_id=contact_id, payload={"trigger": t.trigger} if t.trigger else {}
            )
            for t in timers
        ]
        # most evaluations schedule timers that exist already; only a new one may be due before the runner wakes
        tx.new_timers += await self._timers.schedule_all(tx.conn, rows)


def _payload(kind: str, contact_id: uuid.UUID, decision: Escalation, now: datetime) -> dict[str, Any]:
    """The body of a notification: what happened, to which contact, who must act and why."""
    return {
        "type": kind,
        "contact_id": str(contact_id),
        "trigger": decision.trigger,
        "target": decision.target,
        "level": decision.level,
        "priority": decision.priority,
        "group": decision.group,
        "queue": decision.queue,
        "agent": decision.agent,
        "reason": decision.evidence,
        "at": now.isoformat(),
    }
