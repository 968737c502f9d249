"""The policy engine: given a contact's facts, the policy and ``now``, which escalations fire and which timers to set.

Pure and idempotent: the caller passes the triggers already fired for the contact (``ContactFacts.fired``), and a
trigger in that set never fires again. A timer is a wake-up call, not a decision: when it comes due the caller
evaluates again at that ``now``, so a contact answered meanwhile simply produces nothing. Wake-up keys are stable, so
scheduling the same timer twice is one row (``escalation.timers.key`` is unique).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import UUID

from contracts.routing import CommandPrecondition, ContactState
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.domain.sla import SlaFacts, sla_clocks
from services.escalation.exceptions import AlreadyEscalated, TargetNotAllowed

CLOSED = frozenset({"resolved", "closed", "abandoned"})


@dataclass(frozen=True, slots=True)
class Message:
    text: str
    at: datetime
    from_customer: bool = True


@dataclass(frozen=True, slots=True)
class ContactFacts:
    """What the engine knows about one contact; every time is timezone-aware."""

    contact_id: UUID
    queue: str
    tier: str
    queued_at: datetime
    status: str = "waiting"
    owning_tam: str | None = None
    category: str | None = None
    messages: Sequence[Message] = ()
    transfers: int = 0
    first_answered_at: datetime | None = None
    customer_contacts: Sequence[datetime] = ()  # when each contact of this customer began, on any channel
    fired: frozenset[str] = frozenset()


def unseen(contact_id: UUID, now: datetime) -> ContactFacts:
    """What is known of a contact this service has not seen yet (its events still on the way): nothing but its id;
    a person may escalate it all the same, and a case opened by hand climbs all the same."""
    return ContactFacts(contact_id, queue="", tier="standard", queued_at=now)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided for one trigger: move the contact to ``queue``/``group`` (``agent`` when one person
    owns it) at ``priority``, as ``target``'s case at ``level``; a warning only tells the target."""

    trigger: str
    target: str
    level: int
    group: str
    queue: str
    priority: int
    evidence: str
    agent: str | None = None
    warning_only: bool = False  # an SLA warning notifies; it moves nothing


@dataclass(frozen=True, slots=True)
class WakeUp:
    """A timer to set: when it comes due the contact is evaluated again (an acknowledgement timer's case climbs)."""

    kind: str
    key: str
    due_at: datetime
    trigger: str | None = None  # an acknowledgement timer's: the case it watches is (contact, trigger)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One run of the policy on a contact: what it decided now, and when to run it again."""

    escalations: list[Decision] = field(default_factory=list)
    timers: list[WakeUp] = field(default_factory=list)


def evaluate(facts: ContactFacts, policy: EscalationPolicy, now: datetime) -> Evaluation:
    """Every trigger of ``policy`` on ``facts`` at ``now``: escalations, highest priority first, and timers to set."""
    if facts.status in CLOSED:
        return Evaluation()
    out = Evaluation()
    _crisis(facts, policy, out)
    _key_account(facts, policy, now, out)
    _technical(facts, policy, now, out)
    _repeat_contact(facts, policy, now, out)
    _sla(facts, policy, now, out)
    out.escalations.sort(key=lambda e: (e.warning_only, -e.priority))
    _sound_moves(facts, policy, out)
    out.timers.extend(t for e in out.escalations if (t := ack_timer(facts.contact_id, e, policy, now)) is not None)
    return out


def _sound_moves(facts: ContactFacts, policy: EscalationPolicy, out: Evaluation) -> None:
    """An escalation never moves a contact down, nor twice at once: of the escalations that would move it, only the
    highest moves it, and only if its priority is not below the one an earlier escalation gave it; the others are
    still reported to their targets, and move nothing.

    Nor does one move a contact the router has not queued yet (its ``queued`` event not seen: no queue): the router
    would not know the contact the command names. Those wait, unfired, for the evaluation that event brings.
    """
    if not facts.queue:
        out.escalations[:] = [e for e in out.escalations if e.warning_only]
        return
    moved_to = [_moved_to(name, policy) for name in facts.fired]
    reached = max((policy.targets[t].priority for t in moved_to if t in policy.targets), default=None)
    moving = False
    for n, escalation in enumerate(out.escalations):
        if escalation.warning_only:
            continue
        if moving or (reached is not None and escalation.priority < reached):
            out.escalations[n] = replace(escalation, warning_only=True)
        else:
            moving = True


def _moved_to(trigger: str, policy: EscalationPolicy) -> str | None:
    """The target a fired trigger moved the contact to (None for a warning, which moves nothing)."""
    triggers = policy.triggers
    if trigger.startswith("manual."):
        return trigger.removeprefix("manual.")
    if trigger.startswith("sla."):
        return triggers.sla.target if triggers.sla is not None and trigger.endswith(".breach") else None
    named = (
        getattr(triggers, trigger, None)
        if trigger in ("crisis", "key_account", "technical", "repeat_contact")
        else None
    )
    target = getattr(named, "target", None)
    return target if isinstance(target, str) else None


def manual_targets(policy: EscalationPolicy) -> list[str]:
    """The targets an agent may escalate to by hand: the manual trigger's list, else every declared target."""
    return list(policy.triggers.manual.allowed_targets) if policy.triggers.manual else sorted(policy.targets)


def manual(facts: ContactFacts, policy: EscalationPolicy, *, target: str, reason: str) -> Decision:
    """An agent's request to escalate to ``target`` (``TargetNotAllowed``, ``AlreadyEscalated``)."""
    allowed = manual_targets(policy)
    if target not in allowed:
        raise TargetNotAllowed(f"target must be one of {', '.join(allowed)}, not {target!r}")
    trigger = f"manual.{target}"
    if trigger in facts.fired:
        raise AlreadyEscalated(f"contact {facts.contact_id} was already escalated to {target} by hand")
    return _decide(policy, facts, trigger, target, reason or "requested by an agent")


def assumed(facts: ContactFacts, assignment_id: UUID | None) -> CommandPrecondition | None:
    """What a command decided on ``facts`` assumes about the contact, so the router can refuse it once stale.

    ``assignment_id`` is the assignment the facts last saw (when assigned). A contact not yet queued by the router
    (only its message seen) is waiting in whatever queue the router chose; a closed one has nothing to assume.
    """
    if facts.status == "waiting":
        return CommandPrecondition(state=ContactState.WAITING, queue_id=facts.queue or None)
    if facts.status == "assigned":
        return CommandPrecondition(
            state=ContactState.ASSIGNED, queue_id=facts.queue or None, assignment_id=assignment_id
        )
    return None


def ack_timer(contact_id: UUID, decision: Decision, policy: EscalationPolicy, opened_at: datetime) -> WakeUp | None:
    """The timer after which an unacknowledged ``decision`` climbs a level; None without a timeout configured."""
    level = policy.levels.get(decision.target)
    if level is None or decision.warning_only:
        return None
    kind = f"ack.level{decision.level}"
    due = opened_at + timedelta(seconds=level.ack_timeout_seconds)
    # keyed by when the level opened too: a case opened again (its command refused as stale) gets a timer of its own
    key = f"{contact_id}/{decision.trigger}/{kind}@{opened_at.isoformat()}"
    return WakeUp(kind, key, due, trigger=decision.trigger)


def climb(facts: ContactFacts, decision: Decision, policy: EscalationPolicy) -> Decision | None:
    """The next level of a decision nobody acknowledged in time, or None at the top."""
    nxt = policy.climb(decision.target)
    if nxt is None or facts.status in CLOSED:
        return None
    evidence = f"level {decision.level} ({decision.target}) not acknowledged in time"
    return _decide(policy, facts, decision.trigger, nxt, evidence, level=decision.level + 1)


def _decide(
    policy: EscalationPolicy, facts: ContactFacts, trigger: str, target: str, evidence: str, *, level: int = 1
) -> Decision:
    t = policy.targets[target]
    agent = facts.owning_tam if target == "tam" else None
    group = t.group if agent is not None or t.fallback_group is None else t.fallback_group
    return Decision(trigger, target, level, group, t.queue, t.priority, evidence, agent)


def _fires(facts: ContactFacts, trigger: str, target: str, policy: EscalationPolicy) -> bool:
    # a contact already in the target's queue has been handed over, by a rule or by hand
    return trigger not in facts.fired and facts.queue != policy.targets[target].queue


def _crisis(facts: ContactFacts, policy: EscalationPolicy, out: Evaluation) -> None:
    crisis = policy.triggers.crisis
    if crisis is None or not _fires(facts, "crisis", crisis.target, policy):
        return
    customer = [m for m in facts.messages if m.from_customer]
    found = crisis.compiled.search_any(m.text for m in customer)
    if found is not None:
        index, hit = found
        message = customer[index]
        evidence = (
            f"{hit.category}: {hit.matched!r} in the message of {message.at.isoformat()}: {hit.snippet(message.text)}"
        )
        out.escalations.append(_decide(policy, facts, "crisis", crisis.target, evidence))


def _key_account(facts: ContactFacts, policy: EscalationPolicy, now: datetime, out: Evaluation) -> None:
    trigger = policy.triggers.key_account
    if trigger is None or facts.tier != "key_account" or not _fires(facts, "key_account", trigger.target, policy):
        return
    evidence = f"key-account contact held by tier 1 for {trigger.hold_minutes:g} min"
    _after(facts, policy, now, out, ("key_account", trigger.target, "hold"), trigger.hold_minutes, evidence)


def _technical(facts: ContactFacts, policy: EscalationPolicy, now: datetime, out: Evaluation) -> None:
    trigger = policy.triggers.technical
    if trigger is None or not _fires(facts, "technical", trigger.target, policy):
        return
    text = trigger.technical_text()
    technical = facts.category in trigger.categories or (
        text is not None and any(text.search(m.text) for m in facts.messages if m.from_customer)
    )
    if not technical:
        return
    if trigger.max_transfers is not None and facts.transfers >= trigger.max_transfers:
        evidence = f"technical contact transferred {facts.transfers} times (limit {trigger.max_transfers})"
        out.escalations.append(_decide(policy, facts, "technical", trigger.target, evidence))
    elif trigger.unresolved_minutes is not None:
        evidence = f"technical contact unresolved by tier 1 after {trigger.unresolved_minutes:g} min"
        where = ("technical", trigger.target, "unresolved")
        _after(facts, policy, now, out, where, trigger.unresolved_minutes, evidence)


def _after(
    facts: ContactFacts,
    policy: EscalationPolicy,
    now: datetime,
    out: Evaluation,
    where: tuple[str, str, str],
    minutes: float,
    evidence: str,
) -> None:
    """Escalate ``minutes`` after the contact was queued: now if that time has come, else a timer for it.

    ``where`` is (trigger, target, what the timer waits for).
    """
    trigger, target, waiting = where
    due = facts.queued_at + timedelta(minutes=minutes)
    if now >= due:
        out.escalations.append(_decide(policy, facts, trigger, target, evidence))
    else:
        kind = f"{trigger}.{waiting}"
        out.timers.append(WakeUp(kind, f"{facts.contact_id}/{kind}", due))


def _repeat_contact(facts: ContactFacts, policy: EscalationPolicy, now: datetime, out: Evaluation) -> None:
    trigger = policy.triggers.repeat_contact
    if trigger is None or not _fires(facts, "repeat_contact", trigger.target, policy):
        return
    since = now - timedelta(hours=trigger.within_hours)
    window = [at for at in facts.customer_contacts if since <= at <= now]
    count = len(window)
    # the customer's latest contact is the one to escalate: the one they are on now (the service re-evaluates it
    # when an older contact's events arrive late, so the order events come in does not matter)
    if count >= trigger.contacts and facts.queued_at >= max(window):
        evidence = f"{count} contacts from this customer within {trigger.within_hours:g} h"
        out.escalations.append(_decide(policy, facts, "repeat_contact", trigger.target, evidence))


def _sla(facts: ContactFacts, policy: EscalationPolicy, now: datetime, out: Evaluation) -> None:
    trigger = policy.triggers.sla
    if trigger is None:
        return
    customer = [m.at for m in facts.messages if m.from_customer]
    agent = [m.at for m in facts.messages if not m.from_customer]
    sla = SlaFacts(
        queue=facts.queue,
        tier=facts.tier,
        queued_at=facts.queued_at,
        first_answered_at=facts.first_answered_at,
        last_customer_message_at=max(customer, default=None),
        last_agent_message_at=max(agent, default=None),
    )
    for clock in sla_clocks(sla, trigger):
        for stage, due in (("warn", clock.warn_at), ("breach", clock.breach_at)):
            name = f"sla.{clock.kind}.{stage}"
            if name in facts.fired:
                continue
            if now < due:
                key = f"{facts.contact_id}/{name}/{clock.started_at.isoformat()}"
                out.timers.append(WakeUp(name, key, due))
            elif stage == "breach" or now < clock.breach_at:  # past the breach a warning is moot
                evidence = f"{clock.kind} {stage}: due {due.isoformat()} (clock started {clock.started_at.isoformat()})"
                decision = _decide(policy, facts, name, trigger.target, evidence)
                if stage == "warn":
                    decision = replace(decision, warning_only=True)
                out.escalations.append(decision)
