"""Routing configuration validation: every refusal names the file, the line and the field; warnings do not refuse."""

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from contracts import Channel
from kefu.config_file import ConfigError, load_section
from kefu.settings import EXAMPLE_CONFIG
from services.router.domain.config import AgentConfig, CustomerTier, RoutingConfig, Shift
from tools.config_check import check, main

ROUTING_EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "routing.yaml"

VALID = """\
routing:
  skills: {presales: 售前, returns: 退换货, technical: 技术}
  default_queue: presales
  rules:
    - name: returns
      match: {regex: '退货|\\brefund\\b'}
      queue: returns
  queues:
    - id: presales
      name: Presales
      channels: [webchat]
      skills: {presales: 3}
      bullseye:
        - {after_seconds: 30, relax: {presales: 2}}
      overflow: {to: returns, after_seconds: 600}
    - id: returns
      name: Returns
      channels: [webchat, email]
      skills: {returns: 2}
      hours:
        time_zone: Asia/Shanghai
        weekly: {mon: ["09:00-12:00", "13:00-18:00"]}
        holidays: CN
  agents:
    - {id: alice, name: Alice, skills: {presales: 2, returns: 2}, capacity: {webchat: 3, email: 1}}
"""


def validate_file(path: Path) -> tuple[list[str], list[str]]:
    report = check([path])
    return report.errors, report.warnings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _line(text: str, needle: str) -> int:
    """The 1-based line of the only line of ``text`` containing ``needle``."""
    found = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(found) == 1, f"{needle!r} is on lines {found}"
    return found[0]


def _refused(tmp_path: Path, text: str) -> list[str]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_section(path, "routing", RoutingConfig)
    errors, _ = validate_file(path)
    assert errors == caught.value.errors
    return errors


def test_the_base_configuration_is_valid(tmp_path: Path) -> None:
    assert validate_file(_write(tmp_path, VALID)) == ([], [])


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("{presales: 3}", "{presales: 3, cooking: 1}", "routing.queues.0.skills.cooking", "unknown skill 'cooking'"),
        ("relax: {presales: 2}", "relax: {presales: 2}, drop: [x]", "routing.queues.0.bullseye.0.drop.0", "'x'"),
        ("returns: 2}, capacity", "returns: 2, sales: 1}, capacity", "routing.agents.0.skills.sales", "unknown skill"),
    ],
)
def test_an_unknown_skill_is_refused_where_it_is_used(
    tmp_path: Path, old: str, new: str, field: str, message: str
) -> None:
    text = VALID.replace(old, new)
    errors = _refused(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'routing.yaml'}:{_line(text, new)}: {field}: ")
    assert message in errors[0]


def test_an_overflow_cycle_is_refused_naming_the_cycle(tmp_path: Path) -> None:
    text = VALID.replace("holidays: CN", "holidays: CN\n      overflow: {to: presales, when_waiting_over: 50}")
    error, refused = _refused(tmp_path, text)
    assert f":{_line(text, 'to: returns')}: routing.queues.0.overflow.to: " in error
    assert error.endswith("overflow cycle: presales -> returns -> presales")
    # and returns' email contacts would overflow into a queue that never serves email
    assert refused.endswith(
        "routing.queues.1.overflow.to: queue 'presales' does not accept email; its channels are ['webchat']"
    )


@pytest.mark.parametrize(
    ("hours", "field", "message"),
    [
        ('["18:00-09:00"]', "weekly.mon.0", "the start must be before the end"),
        ('["09:00-25:30"]', "weekly.mon.0", "not a valid time"),
        ('["9-18"]', "weekly.mon.0", "not a time range HH:MM-HH:MM"),
        ('["09:00-12:00", "11:00-18:00"]', "weekly.mon.1", "'11:00-18:00' overlaps '09:00-12:00'"),
    ],
)
def test_impossible_business_hours_are_refused(tmp_path: Path, hours: str, field: str, message: str) -> None:
    text = VALID.replace('["09:00-12:00", "13:00-18:00"]', hours)
    (error,) = _refused(tmp_path, text)
    assert f":{_line(text, 'mon:')}: routing.queues.1.hours.{field}: " in error
    assert message in error


def test_a_range_inside_another_is_refused_with_a_range_between(tmp_path: Path) -> None:
    text = VALID.replace('["09:00-12:00", "13:00-18:00"]', '["08:00-20:00", "09:00-10:00", "13:00-18:00"]')
    errors = _refused(tmp_path, text)
    assert all(f":{_line(text, 'mon:')}: " in e for e in errors)
    assert [e.split(": ", 1)[1] for e in errors] == [
        "routing.queues.1.hours.weekly.mon.1: '09:00-10:00' overlaps '08:00-20:00'",
        "routing.queues.1.hours.weekly.mon.2: '13:00-18:00' overlaps '08:00-20:00'",
    ]


def test_an_unknown_time_zone_and_day_are_refused(tmp_path: Path) -> None:
    text = VALID.replace("Asia/Shanghai", "Asia/Beijing").replace("{mon:", "{monday: [], mon:")
    errors = _refused(tmp_path, text)
    assert [e.split(": ")[1] for e in errors] == [
        "routing.queues.1.hours.time_zone",
        "routing.queues.1.hours.weekly.monday",
    ]
    assert f":{_line(text, 'time_zone')}: " in errors[0]
    assert "unknown IANA time zone 'Asia/Beijing'" in errors[0]


def test_a_regex_that_does_not_compile_is_refused(tmp_path: Path) -> None:
    text = VALID.replace("'退货|\\brefund\\b'", "'(退货|refund'")
    (error,) = _refused(tmp_path, text)
    assert f":{_line(text, 'regex')}: routing.rules.0.match.regex: the regex does not compile: " in error
    assert "missing ), unterminated subpattern" in error


def test_a_queue_no_agent_can_ever_serve_is_refused(tmp_path: Path) -> None:
    # alice has presales 2: enough only once the bullseye relaxed presales from 3 to 2
    assert validate_file(_write(tmp_path, VALID))[0] == []
    text = VALID.replace("{presales: 2, returns: 2}", "{presales: 1, returns: 2}")
    errors = _refused(tmp_path, text)
    assert errors == [
        f"{tmp_path / 'routing.yaml'}:{_line(text, 'channels: [webchat]')}: routing.queues.0.channels.0: "
        "no configured agent can ever serve webchat contacts in queue 'presales': none has a slot on webchat and "
        "skills {'presales': 2} (after every bullseye step)"
    ]


def test_a_queue_with_only_agents_on_other_channels_is_refused(tmp_path: Path) -> None:
    text = VALID.replace("capacity: {webchat: 3, email: 1}", "capacity: {phone: 1}")
    errors = _refused(tmp_path, text)
    assert [e.split(": ")[1] for e in errors] == [
        "routing.queues.0.channels.0",
        "routing.queues.1.channels.0",
        "routing.queues.1.channels.1",
    ]


def test_a_queue_served_on_only_some_of_its_channels_is_refused_per_channel(tmp_path: Path) -> None:
    text = VALID.replace("capacity: {webchat: 3, email: 1}", "capacity: {webchat: 3, email: 0}")
    (error,) = _refused(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'routing.yaml'}:{_line(text, 'channels: [webchat, email]')}: ")
    assert "routing.queues.1.channels.1: no configured agent can ever serve email contacts in queue 'returns'" in error


def test_bullseye_steps_must_wait_longer_and_relax(tmp_path: Path) -> None:
    step = "{after_seconds: 30, relax: {presales: 2}}"
    text = VALID.replace(step, step + "\n        - {after_seconds: 10, relax: {presales: 4}}")
    errors = _refused(tmp_path, text)
    line = _line(text, "after_seconds: 10")
    assert errors == [
        f"{tmp_path / 'routing.yaml'}:{line}: routing.queues.0.bullseye.1.after_seconds: "
        "must be greater than the step before (30)",
        f"{tmp_path / 'routing.yaml'}:{line}: routing.queues.0.bullseye.1.relax.presales: "
        "4 does not relax the minimum 2",
    ]


def test_an_unreachable_queue_is_a_warning_not_an_error(tmp_path: Path) -> None:
    text = VALID.replace("  agents:", "    - {id: spare, name: Spare, channels: [email]}\n  agents:")
    path = _write(tmp_path, text)
    load_section(path, "routing", RoutingConfig)  # not refused
    errors, warnings = validate_file(path)
    assert errors == []
    assert warnings == [
        f"{path}:{_line(text, 'id: spare')}: routing.queues.2.id: queue 'spare' is unreachable: "
        "no rule, route, overflow or escalation sends to it"
    ]


def test_a_missing_field_points_at_its_parent_and_duplicate_keys_are_refused(tmp_path: Path) -> None:
    text = VALID.replace("      name: Returns\n", "").replace(
        "skills: {returns: 2}", "skills: {returns: 2, returns: 3}"
    )
    errors = _refused(tmp_path, text)
    assert errors == [
        f"{tmp_path / 'routing.yaml'}:{_line(text, 'returns: 2, returns: 3')}: routing.queues.1.skills.returns: "
        "duplicate key",
        f"{tmp_path / 'routing.yaml'}:{_line(text, 'id: returns')}: routing.queues.1.name: Field required",
    ]


def test_the_examples_validate() -> None:
    assert validate_file(ROUTING_EXAMPLE) == ([], [])
    policy = ROUTING_EXAMPLE.with_name("escalation.yaml")
    assert check([EXAMPLE_CONFIG, policy]).errors == []  # what kefu dev loads
    assert check([ROUTING_EXAMPLE, policy]).errors == []


def test_an_escalation_policy_file_is_checked_too(tmp_path: Path) -> None:
    text = "escalation:\n  targets: {}\n"
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    errors, _ = validate_file(path)
    assert errors and all(e.startswith(f"{path}:2: escalation.targets:") for e in errors)
    path.write_text("nothing: here\n", encoding="utf-8")
    assert validate_file(path)[0] == [f"{path}: none of the sections kefu reads (channels, routing, escalation, auth)"]


def test_the_command_prints_ok_or_the_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([ROUTING_EXAMPLE]) == 0
    assert capsys.readouterr().out == "OK\n"
    assert main([_write(tmp_path, VALID.replace("default_queue: presales", "default_queue: nope"))]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'routing.yaml'}:3: routing.default_queue: unknown queue 'nope'")
    assert main([tmp_path / "absent.yaml"]) == 1
    assert "cannot read" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "tier", "language", "queue", "priority", "category"),
    [
        ("我家的空调起火了，冒烟", None, "zh-CN", "crisis", 100, "crisis lexicon (media, legal, safety)"),
        ("There was smoke coming out of the dryer", None, "en", "crisis", 100, "crisis lexicon (media, legal, safety)"),
        ("想咨询一下", CustomerTier.KEY_ACCOUNT, "zh-CN", "key-accounts", 60, "key accounts go to their TAMs"),
        ("空调开机显示故障码E4", None, "zh-CN", "technical", 30, "technical faults"),
        ("I want a refund for order 42", None, "en", "returns", 20, "returns, refunds and warranty"),
        ("Which fridge is the quietest?", None, "en-GB", "presales-en", 10, "English speakers after the rules above"),
        ("这款冰箱有什么颜色？", None, "zh-CN", "presales", 10, None),
    ],
)
def test_the_example_rules_classify_chinese_and_english(
    text: str, tier: CustomerTier | None, language: str, queue: str, priority: int, category: str | None
) -> None:
    routing = load_section(ROUTING_EXAMPLE, "routing", RoutingConfig)
    got = routing.classify(channel=Channel.WEBCHAT, account_id="shop", text=text, tier=tier, language=language)
    assert got == (queue, priority, category)


def test_per_channel_offer_timeouts_give_the_engine_the_longest() -> None:
    routing = load_section(ROUTING_EXAMPLE, "routing", RoutingConfig)
    presales = next(q for q in routing.queues if q.id == "presales")
    assert presales.offer_timeout_for(Channel.PHONE) == 20
    assert presales.to_domain().offer_timeout.total_seconds() == 120


def test_sticky_routing_is_off_unless_configured_and_its_values_are_checked(tmp_path: Path) -> None:
    assert load_section(_write(tmp_path, VALID), "routing", RoutingConfig).sticky is None
    on = VALID.replace("  default_queue: presales\n", "  default_queue: presales\n  sticky: {wait_seconds: 30}\n")
    sticky = load_section(_write(tmp_path, on), "routing", RoutingConfig).sticky
    assert sticky is not None
    assert (sticky.window_minutes, sticky.wait_seconds, sticky.key_account_wait_seconds) == (1440, 30, 120)
    bad = VALID.replace("  default_queue: presales\n", "  default_queue: presales\n  sticky: {window_minutes: 0}\n")
    (error,) = _refused(tmp_path, bad)
    assert f":{_line(bad, 'sticky')}: routing.sticky.window_minutes: " in error


def test_hours_and_shifts_become_business_calendars(tmp_path: Path) -> None:
    text = VALID.replace("holidays: CN", "holidays: [CN, 2026-11-11]\n        makeup_workdays: [2026-11-14]")
    routing = load_section(_write(tmp_path, text), "routing", RoutingConfig)
    hours = routing.queues[1].hours
    assert hours is not None
    shanghai = ZoneInfo("Asia/Shanghai")
    calendar = hours.calendar()
    assert calendar.is_open(datetime(2026, 11, 9, 10, 0, tzinfo=shanghai))  # a Monday
    assert not calendar.is_open(datetime(2026, 11, 11, 10, 0, tzinfo=shanghai))  # closed by date
    assert calendar.is_open(datetime(2026, 11, 14, 10, 0, tzinfo=shanghai))  # make-up Saturday, Monday's hours
    assert not calendar.is_open(datetime(2026, 10, 5, 10, 0, tzinfo=shanghai))  # National Day (CN)
    shift = Shift(time_zone="Europe/Berlin", weekly={"sun": ["22:00-24:00"]})
    assert shift.calendar().is_open(datetime(2026, 11, 15, 23, 30, tzinfo=ZoneInfo("Europe/Berlin")))
    assert not shift.calendar().is_open(datetime(2026, 11, 16, 0, 0, tzinfo=ZoneInfo("Europe/Berlin")))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Wang\x00Li", "must not contain NUL characters"),
        ("groups", ["tier1", "\udab1"], "unpaired surrogate"),
        ("skills", {"pre\x00sales": 3}, "must not contain NUL characters"),
    ],
)
def test_agent_text_that_postgresql_cannot_store_is_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AgentConfig.model_validate({"id": "wang.li", "name": "Wang Li", field: value})
