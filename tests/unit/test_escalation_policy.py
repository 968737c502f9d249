"""The escalation policy: the example loads, and every refusal names file, line and field."""

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kefu.config_file import ConfigError, load_section, parse, parse_section
from services.escalation.domain.policy import EscalationPolicy

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "escalation.yaml"

BASE = """\
escalation:
  targets:
    engineers: {group: engineers, queue: technical}
    supervisors: {group: supervisors, queue: complaints}
    crisis: {group: crisis, queue: crisis, priority: 100}
"""


def _parse(extra: str) -> EscalationPolicy:
    return parse_section(parse(BASE + extra, Path("esc.yaml")), "escalation", EscalationPolicy)


def _errors(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _parse(extra)
    return caught.value.errors


def test_the_example_loads_with_every_trigger() -> None:
    policy = load_section(EXAMPLE, "escalation", EscalationPolicy)
    assert set(policy.targets) == {"engineers", "tam", "supervisors", "crisis"}
    assert policy.climb("engineers") == "supervisors" and policy.climb("supervisors") == "crisis"
    assert policy.climb("crisis") is None
    triggers = policy.triggers
    assert triggers.sla and triggers.key_account and triggers.technical and triggers.crisis
    assert triggers.repeat_contact and triggers.manual
    assert triggers.crisis.compiled.search("我要找媒体曝光你们") is not None
    assert policy.targets["crisis"].notify[0].secret == "KEFU_WEBHOOK_WECOM_CRISIS"


def test_unknown_target_names_line_and_field() -> None:
    errors = _errors("  triggers:\n    repeat_contact: {target: managers, contacts: 3, within_hours: 24}\n")
    assert errors == [
        "esc.yaml:7: escalation.triggers.repeat_contact.target: unknown target 'managers'; "
        "declared targets are ['crisis', 'engineers', 'supervisors']"
    ]


def test_unknown_manual_target_and_level() -> None:
    errors = _errors(
        "  levels:\n    engineers: {ack_timeout_seconds: 60, next: boss}\n"
        "  triggers:\n    manual: {allowed_targets: [engineers, ceo]}\n"
    )
    assert any(e.startswith("esc.yaml:7: escalation.levels.engineers.next: unknown target 'boss'") for e in errors)
    assert any(
        e.startswith("esc.yaml:9: escalation.triggers.manual.allowed_targets.1: unknown target 'ceo'") for e in errors
    )


def test_trigger_without_its_threshold() -> None:
    errors = _errors("  triggers:\n    repeat_contact: {contacts: 3}\n    key_account: {}\n")
    assert "esc.yaml:7: escalation.triggers.repeat_contact.within_hours: Field required" in errors
    assert "esc.yaml:8: escalation.triggers.key_account.hold_minutes: Field required" in errors


def test_technical_and_sla_need_a_threshold() -> None:
    errors = _errors(
        "  triggers:\n    technical: {categories: [technical]}\n    sla:\n      clocks:\n        - {queue: presales}\n"
    )
    assert (
        "esc.yaml:7: escalation.triggers.technical: the technical trigger needs unresolved_minutes or max_transfers"
        in errors
    )
    assert (
        "esc.yaml:10: escalation.triggers.sla.clocks.0: an SLA clock needs first_response_seconds, "
        "next_response_seconds or resolution_seconds"
    ) in errors


def test_lexicon_pattern_that_does_not_compile() -> None:
    errors = _errors(
        "  triggers:\n    crisis:\n      lexicon:\n        legal:\n          terms: [律师]\n"
        "          patterns: ['\\bsue(d']\n"
    )
    assert len(errors) == 1
    assert errors[0].startswith("esc.yaml:11: escalation.triggers.crisis.lexicon.legal.patterns.0: the pattern")
    assert "does not compile: missing ), unterminated subpattern" in errors[0]


def test_technical_pattern_that_does_not_compile() -> None:
    errors = _errors("  triggers:\n    technical: {patterns: ['[E'], max_transfers: 2}\n")
    assert errors[0].startswith(
        "esc.yaml:7: escalation.triggers.technical.patterns.0: the pattern '[E' does not compile"
    )


def test_level_cycle_is_refused() -> None:
    errors = _errors(
        "  levels:\n    engineers: {ack_timeout_seconds: 60, next: supervisors}\n"
        "    supervisors: {ack_timeout_seconds: 60, next: engineers}\n"
        "    crisis: {ack_timeout_seconds: 60}\n"
    )
    assert errors == [
        "esc.yaml:7: escalation.levels.engineers.next: level cycle: engineers -> supervisors -> engineers"
    ]


def test_unknown_fields_bad_hours_and_bad_webhooks() -> None:
    errors = _errors(
        "  triggers:\n    sla:\n      warn_at: 80\n"
        "      hours: {time_zone: Mars/Olympus, weekly: {mon: ['18:00-09:00']}}\n"
        "      clocks: [{first_response_seconds: 60}]\n"
    )
    assert "esc.yaml:8: escalation.triggers.sla.warn_at: Extra inputs are not permitted" in errors
    assert any("hours.time_zone: unknown IANA time zone 'Mars/Olympus'" in e for e in errors)
    assert any("hours.weekly.mon.0: '18:00-09:00': the start must be before the end" in e for e in errors)
    hook = _errors_webhook()
    assert any("notify.0.secret" in e for e in hook) and any("notify.0.url" in e for e in hook)


def test_sla_hours_are_written_like_queue_hours() -> None:
    policy = _parse(
        "  triggers:\n    sla:\n"
        "      hours: {time_zone: Asia/Shanghai, weekly: {mon: ['09:00-18:00']}, holidays: [CN, 2026-11-16],"
        " makeup_workdays: [2026-11-14]}\n"
        "      clocks: [{first_response_seconds: 60}]\n"
    )
    assert policy.triggers.sla is not None and policy.triggers.sla.hours is not None
    calendar = policy.triggers.sla.hours.calendar()
    shanghai = ZoneInfo("Asia/Shanghai")
    assert calendar.is_open(datetime(2026, 11, 14, 10, 0, tzinfo=shanghai))  # a make-up Saturday, Monday's hours
    assert not calendar.is_open(datetime(2026, 11, 16, 10, 0, tzinfo=shanghai))  # a Monday closed by date
    assert not calendar.is_open(datetime(2026, 10, 5, 10, 0, tzinfo=shanghai))  # National Day (CN), a Monday
    assert policy.triggers.sla.hours.calendar() is calendar  # built once, not at every evaluation (issue 12)


@pytest.mark.parametrize(
    ("weekly", "message"),
    [
        ("{mon: ['09:00-12:00', '11:00-18:00']}", "hours.weekly.mon.1: '11:00-18:00' overlaps '09:00-12:00'"),
        ("{mon: []}", "hours: business hours must open on at least one day"),
    ],
)
def test_sla_hours_that_would_miscount_are_refused(weekly: str, message: str) -> None:
    errors = _errors(
        f"  triggers:\n    sla:\n      hours: {{time_zone: UTC, weekly: {weekly}}}\n"
        "      clocks: [{first_response_seconds: 60}]\n"
    )
    assert len(errors) == 1 and message in errors[0], errors


def _errors_webhook() -> list[str]:
    text = BASE.replace(
        "{group: engineers, queue: technical}",
        "{group: engineers, queue: technical, notify: [{name: x, url: 'nope', secret: whsec_plain}]}",
    )
    with pytest.raises(ConfigError) as caught:
        parse_section(parse(text, Path("esc.yaml")), "escalation", EscalationPolicy)
    return caught.value.errors


def test_policy_is_frozen() -> None:
    policy = _parse("")
    with pytest.raises(ValueError, match="frozen"):
        policy.targets["crisis"].priority = 1  # type: ignore[misc]
