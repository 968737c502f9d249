"""The policy engine: each trigger fires once, with evidence and target; timers for what is not due yet."""

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from kefu.config_file import load_section
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.domain.triggers import ContactFacts, Message, climb, evaluate, manual
from services.escalation.exceptions import AlreadyEscalated, TargetNotAllowed

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "escalation.yaml"
CONTACT = UUID("00000000-0000-0000-0000-000000000001")
T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")  # a Monday, inside business hours


@pytest.fixture(scope="module")
def policy() -> EscalationPolicy:
    return load_section(EXAMPLE, "escalation", EscalationPolicy)


def _facts(**changes: object) -> ContactFacts:
    base: dict[str, object] = {"contact_id": CONTACT, "queue": "presales", "tier": "standard", "queued_at": T0}
    return ContactFacts(**{**base, **changes})  # type: ignore[arg-type]


def _fired(policy: EscalationPolicy, facts: ContactFacts, now: datetime) -> list[str]:
    return [e.trigger for e in evaluate(facts, policy, now).escalations if not e.warning_only]


def test_crisis_fires_at_once_with_highest_priority_and_evidence(policy: EscalationPolicy) -> None:
    facts = _facts(messages=[Message("冰箱坏了", T0), Message("再不处理我就找记者曝光", T0 + timedelta(minutes=1))])
    result = evaluate(facts, policy, T0 + timedelta(minutes=1))
    first = result.escalations[0]
    assert (first.trigger, first.target, first.queue, first.priority, first.level) == (
        "crisis",
        "crisis",
        "crisis",
        100,
        1,
    )
    assert "media: '记者'" in first.evidence and "找记者曝光" in first.evidence
    opened = (T0 + timedelta(minutes=1)).isoformat()
    assert any(t.kind == "ack.level1" and t.key == f"{CONTACT}/crisis/ack.level1@{opened}" for t in result.timers)


def test_crisis_ignores_agent_messages_negations_and_fired(policy: EscalationPolicy) -> None:
    now = T0 + timedelta(minutes=1)
    assert "crisis" not in _fired(
        policy, _facts(messages=[Message("我们不会让记者知道", T0, from_customer=False)]), now
    )
    assert "crisis" not in _fired(policy, _facts(messages=[Message("没有起火，只是有点热", T0)]), now)
    fired = _facts(messages=[Message("起火了", T0)], fired=frozenset({"crisis"}))
    assert "crisis" not in _fired(policy, fired, now)


def test_key_account_goes_to_its_tam_after_the_hold(policy: EscalationPolicy) -> None:
    facts = _facts(tier="key_account", owning_tam="tam.li", first_answered_at=T0)
    early = evaluate(facts, policy, T0 + timedelta(minutes=5))
    assert not early.escalations
    assert [(t.kind, t.due_at) for t in early.timers if t.kind.startswith("key_account")] == [
        ("key_account.hold", T0 + timedelta(minutes=10))
    ]
    late = evaluate(facts, policy, T0 + timedelta(minutes=10))
    decision = next(e for e in late.escalations if e.trigger == "key_account")
    assert (decision.target, decision.agent, decision.queue, decision.group) == ("tam", "tam.li", "key-accounts", "tam")
    assert "key_account" not in _fired(
        policy, _facts(tier="key_account", queue="key-accounts"), T0 + timedelta(hours=1)
    )


def test_key_account_without_owner_falls_back_to_the_tam_group(policy: EscalationPolicy) -> None:
    late = evaluate(_facts(tier="key_account", first_answered_at=T0), policy, T0 + timedelta(minutes=11))
    decision = next(e for e in late.escalations if e.trigger == "key_account")
    assert (decision.agent, decision.group) == (None, "tam")


def test_technical_after_transfers_or_unresolved_time(policy: EscalationPolicy) -> None:
    now = T0 + timedelta(minutes=5)
    transferred = _facts(category="technical", transfers=2, first_answered_at=T0)
    assert "technical" in _fired(policy, transferred, now)
    by_text = _facts(messages=[Message("显示故障码 E4", T0)], first_answered_at=T0)
    result = evaluate(by_text, policy, now)
    assert not any(e.trigger == "technical" for e in result.escalations)
    assert any(t.kind == "technical.unresolved" and t.due_at == T0 + timedelta(minutes=30) for t in result.timers)
    assert "technical" in _fired(policy, by_text, T0 + timedelta(minutes=30))
    assert "technical" not in _fired(policy, _facts(messages=[Message("发票抬头", T0)]), T0 + timedelta(hours=1))


def test_repeat_contact_in_the_window(policy: EscalationPolicy) -> None:
    now = T0 + timedelta(hours=1)
    three = [T0 - timedelta(hours=20), T0 - timedelta(hours=2), T0]
    assert "repeat_contact" in _fired(policy, _facts(customer_contacts=three, first_answered_at=T0), now)
    old = [T0 - timedelta(hours=30), T0 - timedelta(hours=2), T0]
    assert "repeat_contact" not in _fired(policy, _facts(customer_contacts=old, first_answered_at=T0), now)
    # an earlier contact of the three does not fire: the latest one does
    earlier = _facts(customer_contacts=three, first_answered_at=T0, queued_at=T0 - timedelta(hours=2))
    assert "repeat_contact" not in _fired(policy, earlier, now)


def test_sla_warns_then_breaches_once(policy: EscalationPolicy) -> None:
    facts = _facts()  # standard tier: first response within 600 s, warn at 80%
    timers = {t.kind: t.due_at for t in evaluate(facts, policy, T0).timers}
    assert timers["sla.first_response.warn"] == T0 + timedelta(seconds=480)
    assert timers["sla.first_response.breach"] == T0 + timedelta(seconds=600)
    warn = evaluate(facts, policy, T0 + timedelta(seconds=500)).escalations
    assert [(e.trigger, e.warning_only) for e in warn] == [("sla.first_response.warn", True)]
    breach = evaluate(facts, policy, T0 + timedelta(seconds=600)).escalations
    assert [(e.trigger, e.target) for e in breach] == [("sla.first_response.breach", "supervisors")]
    done = _facts(fired=frozenset({"sla.first_response.warn", "sla.first_response.breach"}))
    assert not evaluate(done, policy, T0 + timedelta(seconds=700)).escalations


def test_closed_contact_never_escalates(policy: EscalationPolicy) -> None:
    facts = _facts(status="resolved", messages=[Message("起火了", T0)])
    assert evaluate(facts, policy, T0 + timedelta(days=3)) == evaluate(_facts(status="closed"), policy, T0)


def test_manual_and_climbing_levels(policy: EscalationPolicy) -> None:
    facts = _facts()
    decision = manual(facts, policy, target="engineers", reason="customer asked for an engineer")
    assert (decision.trigger, decision.target, decision.level) == ("manual.engineers", "engineers", 1)
    with pytest.raises(TargetNotAllowed, match="must be one of engineers, tam, supervisors, crisis"):
        manual(facts, policy, target="ceo", reason="")
    with pytest.raises(AlreadyEscalated, match="already escalated"):
        manual(_facts(fired=frozenset({"manual.engineers"})), policy, target="engineers", reason="")
    second = climb(facts, decision, policy)
    assert second is not None and (second.target, second.level) == ("supervisors", 2)
    third = climb(facts, second, policy)
    assert third is not None and (third.target, third.level, third.priority) == ("crisis", 3, 100)
    assert climb(facts, third, policy) is None


def test_an_escalation_never_moves_a_contact_down(policy: EscalationPolicy) -> None:
    # a crisis contact nobody answered breaches its first-response SLA: supervisors hear of it, but the contact stays
    # in the crisis queue (the breach's target, complaints at priority 60, is below crisis at 100)
    crisis = _facts(queue="crisis", messages=[Message("起火了", T0)], fired=frozenset({"crisis"}))
    late = T0 + timedelta(hours=2)
    result = evaluate(crisis, policy, late)
    breach = [e for e in result.escalations if e.trigger == "sla.first_response.breach"]
    assert breach, "the breach is still reported"
    assert all(e.warning_only for e in breach), "and moves nothing"
    assert _fired(policy, crisis, late) == []


def test_one_evaluation_moves_a_contact_once_to_the_highest_target(policy: EscalationPolicy) -> None:
    # a crisis phrase in a contact that has also breached its SLA: crisis moves it, the breach only notifies
    facts = _facts(messages=[Message("起火了", T0)])
    assert _fired(policy, facts, T0 + timedelta(hours=2)) == ["crisis"]


def test_nothing_moves_a_contact_the_router_has_not_queued_yet(policy: EscalationPolicy) -> None:
    # the escalation service read the crisis message before the router took the contact in: a command now would name a
    # contact the router does not hold. It fires once the router's `queued` arrives (the facts then have a queue)
    unrouted = _facts(queue="", messages=[Message("起火了", T0)])
    assert _fired(policy, unrouted, T0) == []
    assert _fired(policy, replace(unrouted, queue="presales"), T0) == ["crisis"]
