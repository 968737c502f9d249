"""Running the policy on a contact and carrying out what it decides, inside the caller's unit of work.

A decision that moves the contact opens a case (with its routing command, through the outbox) and notifies its
target; a warning only notifies; a wake-up becomes a durable timer. All of it commits with the facts that caused it or
not at all. A trigger fires once per contact (``contact_facts.fired``, and a unique case per contact and trigger), so
running the policy again on the same facts changes nothing.

What locks a contact's facts and its cases locks the facts first, so two handlers never wait on each other in a
cycle.
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from contracts import RoutingEvent
from contracts.escalations import EscalationStatus
from contracts.routing import CommandPrecondition
from services.escalation.adapters import cases, facts
from services.escalation.adapters.notifier import enqueue
from services.escalation.adapters.timers import timer_row
from services.escalation.domain import triggers
from services.escalation.domain.cases import Action
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.domain.triggers import ContactFacts, Decision, WakeUp, evaluate
from services.escalation.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

POLICY = "policy"
"""The actor the audit trail names for what the policy engine did."""
ROUTER = "router"
"""The actor the audit trail names for a case cancelled because the router refused its command."""


class Escalator:
    """Runs ``policy`` on a contact's facts and carries out its decisions: cases, notifications and timers."""

    def __init__(self, policy: EscalationPolicy) -> None:
        self.policy = policy

    async def reconsider(self, unit: UnitOfWork, contact_id: uuid.UUID, now: datetime) -> None:
        """Run the policy on the contact's facts at ``now`` and carry out what it decides."""
        known = await unit.facts.load(contact_id, customer_contacts_since=self.repeat_window(now))
        if known is None:
            return
        result = evaluate(known, self.policy, now)
        moving = any(not decision.warning_only for decision in result.escalations)
        assumed = await self.assumed(unit, known) if moving else None
        for decision in result.escalations:
            if decision.warning_only:
                # an SLA warning, or an escalation that would have moved the contact down: told, moving nothing
                kind = "sla.warning" if decision.trigger.endswith(".warn") else "escalation.notice"
                await self._notify(
                    unit, decision, f"{contact_id}/{decision.trigger}", _payload(kind, contact_id, decision, now)
                )
            else:
                evidence = {"evidence": decision.evidence}
                await self.open(unit, contact_id, decision, now, actor=POLICY, evidence=evidence, precondition=assumed)
        await facts.mark_fired(unit.facts, contact_id, [decision.trigger for decision in result.escalations])
        self._schedule(unit, contact_id, result.timers)

    async def reconsider_latest_of_customer(self, unit: UnitOfWork, contact_id: uuid.UUID, now: datetime) -> None:
        """A contact began: its customer's latest contact may now be a repeat, even if this one came in late.

        Rows are locked older first, then the latest, so two of these never wait on each other.
        """
        since = self.repeat_window(now)
        latest = None if since is None else await unit.facts.latest_of_customer(contact_id, since)
        if latest is not None and latest != contact_id:
            await self.reconsider(unit, latest, now)

    async def open(
        self,
        unit: UnitOfWork,
        contact_id: uuid.UUID,
        decision: Decision,
        now: datetime,
        *,
        actor: str,
        evidence: dict[str, Any],
        precondition: CommandPrecondition | None = None,
    ) -> uuid.UUID | None:
        """Open ``decision``'s case and send its command; None if the contact already has it. A policy case whose
        command the router refused opens again."""
        reason = decision.evidence if decision.agent is None else f"{decision.evidence} (owning TAM {decision.agent})"
        case_id = await cases.open_case(
            unit.conn,
            contact_id=contact_id,
            decision=decision,
            reason=reason,
            evidence=evidence,
            actor=actor,
            now=now,
            precondition=precondition,
            reopen=actor == POLICY,
        )
        if case_id is not None:
            await self._announced(unit, case_id, contact_id, decision, "escalation.opened", now)
        return case_id

    async def climb(self, unit: UnitOfWork, contact_id: uuid.UUID, trigger: str, now: datetime) -> None:
        """Nobody acknowledged the contact's case for ``trigger`` in time: climb it a level, or at the top say it
        again, louder. A case acknowledged, resolved or cancelled meanwhile stays as it is."""
        known = await unit.facts.load(contact_id)  # facts before the case: the order every handler locks in
        case = await cases.find(unit.conn, contact_id, trigger)
        if case is None or case.status is not EscalationStatus.OPEN:
            return
        current = case.decision
        nxt = triggers.climb(known or triggers.unseen(contact_id, now), current, self.policy)
        if nxt is None:
            # the top level (or a closed contact): nobody is left to climb to
            payload = {**_payload("escalation.unacknowledged", contact_id, current, now), "case_id": str(case.case_id)}
            await self._notify(unit, current, f"{case.case_id}/{current.level}/unacknowledged", payload)
            return
        # a case opened by hand moves the contact wherever it is: a person asked for it
        assumed = await self.assumed(unit, known) if known is not None and case.created_by == POLICY else None
        await cases.climb(unit.conn, case.case_id, nxt, now=now, precondition=assumed)
        await self._announced(unit, case.case_id, contact_id, nxt, "escalation.climbed", now)

    async def withdraw_refused(self, unit: UnitOfWork, event: RoutingEvent, now: datetime) -> None:
        """The router refused a case's command as stale: the case did not act, so it is cancelled and its trigger
        forgotten; the policy, run next on the newer facts, decides again (and may open it again)."""
        found = (
            None
            if event.command_id is None
            else await cases.find_by_command(unit.conn, event.contact_id, event.command_id)
        )
        if found is None or found.status not in (EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED):
            return
        reason = f"the router refused its routing command: {event.reason or 'its precondition no longer held'}"
        log.info("escalation case %s: %s", found.case_id, reason)
        await cases.act(unit.conn, found.case_id, Action.CANCEL, actor=ROUTER, note=reason, now=now)
        await facts.unmark_fired(unit.facts, event.contact_id, found.trigger)
        unit.timers.cancel(event.contact_id, prefix=f"{event.contact_id}/{found.trigger}/ack.")
        unit.outbound = True

    @staticmethod
    def stand_down(unit: UnitOfWork, contact_id: uuid.UUID) -> None:
        """The contact closed: nothing can fire for it any more, so its wake-up calls would find nothing to do."""
        unit.timers.cancel(contact_id)

    @staticmethod
    async def assumed(unit: UnitOfWork, known: ContactFacts) -> CommandPrecondition | None:
        """What a command decided on ``known`` assumes: the router refuses it once the contact has moved on."""
        assigned = known.status == "assigned"
        assignment = await facts.current_assignment(unit.conn, known.contact_id, unit.unapplied) if assigned else None
        return triggers.assumed(known, assignment)

    def repeat_window(self, now: datetime) -> datetime | None:
        """Since when the customer's contacts count towards a repeat contact; None without that trigger."""
        repeat = self.policy.triggers.repeat_contact
        return None if repeat is None else now - timedelta(hours=repeat.within_hours)

    async def _announced(
        self, unit: UnitOfWork, case_id: uuid.UUID, contact_id: uuid.UUID, decision: Decision, kind: str, now: datetime
    ) -> None:
        """A case opened or climbed to ``decision``: its target is told, and its acknowledgement timer set."""
        unit.outbound = True  # the case's event and routing command are in the outbox
        payload = {**_payload(kind, contact_id, decision, now), "case_id": str(case_id)}
        await self._notify(unit, decision, f"{case_id}/{decision.level}", payload)
        timer = triggers.ack_timer(contact_id, decision, self.policy, now)
        self._schedule(unit, contact_id, [timer] if timer is not None else [])

    async def _notify(self, unit: UnitOfWork, decision: Decision, message_id: str, payload: dict[str, Any]) -> None:
        """One notification per webhook of the decision's target; the message id makes a replay notify once."""
        configured = self.policy.targets.get(decision.target)
        for hook in configured.notify if configured is not None else []:
            unit.outbound = True
            await enqueue(
                unit.conn, target=hook.name, url=str(hook.url), payload=payload, message_id=f"{message_id}/{hook.name}"
            )

    @staticmethod
    def _schedule(unit: UnitOfWork, contact_id: uuid.UUID, wake_ups: Sequence[WakeUp]) -> None:
        """Durable timers for ``wake_ups``, in the unit of work: they exist exactly when what decided them commits.
        (Most runs of the policy set timers that exist already; only a new one may be due before the runner wakes:
        the unit counts those it created when it writes them.)"""
        for w in wake_ups:
            if not unit.timers.scheduled(w.key):
                payload = {"trigger": w.trigger} if w.trigger else {}
                unit.timers.schedule(timer_row(w.key, w.kind, w.due_at, contact_id=contact_id, payload=payload))


def _payload(kind: str, contact_id: uuid.UUID, decision: Decision, now: datetime) -> dict[str, Any]:
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
