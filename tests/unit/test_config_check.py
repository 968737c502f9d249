"""The configuration cannot lie: files checked together, every contact servable, every escalation target real.

``kefu config validate`` and the services at start run the same ``tools.config_check.check``; each problem is one
``file:line: field: message`` line, all of them in one pass.
"""

import logging
from pathlib import Path

import pytest

from kefu.config_file import ConfigError
from services.channels.config import ChannelsSettings
from services.escalation.config import EscalationSettings
from services.escalation.domain.policy import EscalationPolicy
from services.router.config import RouterSettings
from tests.unit.test_config_validation import _line
from tools import assemble, cli
from tools.config_check import at_start, check, main

ROUTING = """\
routing:
  groups: {tier1: 一线座席, engineers: 支持工程师, crisis: 危机投诉组}
  default_queue: presales
  rules:
    - {name: technical, match: {keywords: [故障码]}, queue: technical}
  routes:
    - {channel: webchat, queue: presales}
    - {channel: wechat, queue: presales}
  queues:
    - {id: presales, name: Presales, channels: [webchat, wechat], skills: {presales: 1}}
    - {id: technical, name: Technical, channels: [webchat, wechat], group: engineers}
    - {id: crisis, name: Crisis, channels: [webchat, wechat], group: crisis}
  agents:
    - {id: alice, name: Alice, groups: [tier1], skills: {presales: 2}, capacity: {webchat: 2, wechat: 1}}
    - {id: chen, name: Chen, groups: [engineers, crisis], capacity: {webchat: 1, wechat: 1}}
"""

POLICY = """\
escalation:
  targets:
    engineers: {group: engineers, queue: technical, priority: 70}
    crisis: {group: crisis, queue: crisis, priority: 100}
  levels:
    engineers: {ack_timeout_seconds: 900, next: crisis}
  triggers:
    sla:
      target: engineers
      clocks:
        - {queue: presales, first_response_seconds: 600}
    crisis:
      target: crisis
      lexicon: {safety: {terms: [起火, fire]}}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _files(tmp_path: Path, routing: str = ROUTING, policy: str = POLICY) -> tuple[Path, Path]:
    return _write(tmp_path, "kefu.yaml", routing), _write(tmp_path, "escalation.yaml", policy)


def test_a_coherent_routing_file_and_policy_are_valid_together(tmp_path: Path) -> None:
    report = check(_files(tmp_path))
    assert report.errors == []
    assert report.warnings == []  # the crisis queue only escalations reach: the policy is checked along


def test_every_channel_a_queue_accepts_needs_an_agent_with_a_slot_on_it(tmp_path: Path) -> None:
    # alice serves presales on webchat only; bob has a wechat slot but not the skill: nobody serves presales on wechat
    routing = ROUTING.replace("capacity: {webchat: 2, wechat: 1}", "capacity: {webchat: 2}").replace(
        "  agents:\n", "  agents:\n    - {id: bob, name: Bob, groups: [tier1], capacity: {wechat: 3}}\n"
    )
    path = _write(tmp_path, "kefu.yaml", routing)
    assert check([path]).errors == [
        f"{path}:{_line(routing, 'id: presales')}: routing.queues.0.channels.1: no configured agent can ever serve "
        "wechat contacts in queue 'presales': none has a slot on wechat and skills {'presales': 1} "
        "(after every bullseye step)"
    ]


def test_a_missing_capacity_is_no_slot_and_the_group_counts_per_channel(tmp_path: Path) -> None:
    # chen alone is in crisis: without his wechat slot nobody in the group takes a wechat contact
    routing = ROUTING.replace("capacity: {webchat: 1, wechat: 1}", "capacity: {webchat: 1}")
    path = _write(tmp_path, "kefu.yaml", routing)
    line = _line(routing, "id: technical")
    assert check([path]).errors == [
        f"{path}:{line}: routing.queues.1.channels.1: no configured agent can ever serve wechat contacts in queue "
        "'technical': none has a slot on wechat and group 'engineers'",
        f"{path}:{line + 1}: routing.queues.2.channels.1: no configured agent can ever serve wechat contacts in "
        "queue 'crisis': none has a slot on wechat and group 'crisis'",
    ]


def test_a_route_or_rule_to_a_queue_that_refuses_its_channel_is_an_error(tmp_path: Path) -> None:
    routing = ROUTING.replace(
        "    - {channel: wechat, queue: presales}\n",
        "    - {channel: wechat, queue: presales}\n    - {channel: email, queue: presales}\n",
    ).replace("match: {keywords: [故障码]}", "match: {keywords: [故障码], channels: [webchat, phone]}")
    path = _write(tmp_path, "kefu.yaml", routing)
    assert check([path]).errors == [
        f"{path}:{_line(routing, 'channel: email')}: routing.routes.2.queue: queue 'presales' does not accept email; "
        "its channels are ['webchat', 'wechat']",
        f"{path}:{_line(routing, '故障码')}: routing.rules.0.match.channels.1: queue 'technical' does not accept "
        "phone; its channels are ['webchat', 'wechat']",
    ]


def test_a_channel_account_whose_contacts_reach_a_queue_that_refuses_their_channel_is_an_error(tmp_path: Path) -> None:
    # the web chat site and the WeCom account are routed; the mailbox falls through to the default queue, no email there
    kf = "{id: kf, name: KF, corp_id: wx5823bf96d3bd56c7, secret: s, token: QDG6eK, encoding_aes_key: " + "a" * 43 + "}"
    channels = f"""\
channels:
  webchat: [{{id: shop, name: Shop, secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]}}]
  wecom_kf: [{kf}]
  email:
    - {{id: inbox, name: Inbox, address: help@shop.example.com, provider: raw, bearer_token: not-a-real-token}}
"""
    path = _write(tmp_path, "kefu.yaml", channels + ROUTING)
    assert check([path]).errors == [
        f"{path}:{_line(channels, 'id: inbox')}: channels.email.0.id: email contacts of account 'inbox': no route sends"
        " them elsewhere, so to queue 'presales', which does not accept email (its channels are ['webchat', 'wechat']);"
        " route them to one that does"
    ]


def test_an_overflow_into_a_queue_that_refuses_some_of_the_channels_is_an_error(tmp_path: Path) -> None:
    routing = ROUTING.replace(
        "skills: {presales: 1}}", "skills: {presales: 1},\n        overflow: {to: crisis, after_seconds: 60}}"
    ).replace(
        "{id: crisis, name: Crisis, channels: [webchat, wechat]", "{id: crisis, name: Crisis, channels: [webchat]"
    )
    path = _write(tmp_path, "kefu.yaml", routing)
    errors = check([path]).errors
    assert errors == [
        f"{path}:{_line(routing, 'overflow:')}: routing.queues.0.overflow.to: queue 'crisis' does not accept wechat; "
        "its channels are ['webchat']"
    ]


def test_escalation_targets_must_name_router_groups_and_queues_that_exist(tmp_path: Path) -> None:
    policy = POLICY.replace(
        "    crisis: {group: crisis,",
        "    supervisors: {group: supervisors, fallback_group: tier2, queue: complaints}\n    crisis: {group: crisis,",
    )
    routing_path, policy_path = _files(tmp_path, policy=policy)
    line = _line(policy, "supervisors: {")
    report = check([routing_path, policy_path])
    assert report.errors == [
        f"{policy_path}:{line}: escalation.targets.supervisors.queue: unknown router queue 'complaints'; "
        "the router's are ['crisis', 'presales', 'technical']",
        f"{policy_path}:{line}: escalation.targets.supervisors.group: unknown router group 'supervisors'; "
        "the router's are ['crisis', 'engineers', 'tier1']",
        f"{policy_path}:{line}: escalation.targets.supervisors.fallback_group: unknown router group 'tier2'; "
        "the router's are ['crisis', 'engineers', 'tier1']",
    ]
    assert check([routing_path, policy_path]).errors == check([policy_path, routing_path]).errors  # any order


def test_undeclared_groups_are_those_of_agents_and_queues(tmp_path: Path) -> None:
    routing = ROUTING.replace("  groups: {tier1: 一线座席, engineers: 支持工程师, crisis: 危机投诉组}\n", "")
    assert check(_files(tmp_path, routing=routing)).errors == []
    routing = routing.replace("groups: [engineers, crisis]", "groups: [engineers]").replace(", group: crisis}", "}")
    routing_path, policy_path = _files(tmp_path, routing=routing)
    assert check([routing_path, policy_path]).errors == [
        f"{policy_path}:{_line(POLICY, 'crisis: {group')}: escalation.targets.crisis.group: unknown router group "
        "'crisis'; the router's are ['engineers', 'tier1']"
    ]


def test_a_trigger_whose_target_queue_is_its_source_queue_is_a_warning(tmp_path: Path) -> None:
    policy = POLICY.replace(
        "{queue: presales, first_response_seconds: 600}", "{queue: technical, resolution_seconds: 60}"
    )
    policy += "    technical: {target: engineers, categories: [technical, hardware], max_transfers: 2}\n"
    routing_path, policy_path = _files(tmp_path, policy=policy)
    report = check([routing_path, policy_path])
    assert report.errors == []
    same = "these contacts wait in queue 'technical', the queue of target 'engineers': escalating them moves nobody"
    assert [w for w in report.warnings if "is unreachable" not in w] == [
        f"{policy_path}:{_line(policy, 'resolution_seconds')}: escalation.triggers.sla.clocks.0.queue: {same}",
        f"{policy_path}:{_line(policy, 'categories')}: escalation.triggers.technical.categories.0: {same}",
        f"{policy_path}:{_line(policy, 'categories')}: escalation.triggers.technical.categories.1: no routing rule is "
        "named 'hardware'; a contact's category is the name of its rule",
    ]


def test_a_target_queue_missing_a_channel_or_served_by_another_group_is_a_warning(tmp_path: Path) -> None:
    routing = ROUTING.replace(
        "{id: crisis, name: Crisis, channels: [webchat, wechat]", "{id: crisis, name: Crisis, channels: [webchat]"
    )
    policy = POLICY.replace(
        "engineers: {group: engineers, queue: technical", "engineers: {group: tier1, queue: technical"
    )
    routing_path, policy_path = _files(tmp_path, routing=routing, policy=policy)
    report = check([routing_path, policy_path])
    assert report.errors == []
    assert [w for w in report.warnings if "is unreachable" not in w] == [
        f"{policy_path}:{_line(policy, 'engineers: {group')}: escalation.targets.engineers.group: queue 'technical' "
        "is served by group 'engineers', not 'tier1'",
        f"{policy_path}:{_line(policy, 'crisis: {group')}: escalation.targets.crisis.queue: queue 'crisis' does not "
        "accept wechat: a contact on that channel escalated here would wait for ever",
    ]


def test_every_error_of_every_file_is_reported_at_once_with_file_and_line(tmp_path: Path) -> None:
    routing = ROUTING.replace("skills: {presales: 1}}", "skills: {presales: 7}}").replace(
        "{channel: webchat, queue: presales}", "{channel: webchat, queue: nowhere}"
    )
    routing = "channels:\n  webchat: [{id: shop, name: Shop, secrets: []}]\n" + routing
    policy = POLICY.replace("target: crisis\n", "target: pr\n").replace("queue: technical,", "queue: tech,")
    routing_path, policy_path = _files(tmp_path, routing=routing, policy=policy)
    errors = check([routing_path, policy_path]).errors
    assert [e.split(": ")[0:2] for e in errors] == [
        [f"{routing_path}:2", "channels.webchat.0.secrets"],
        [f"{routing_path}:{_line(routing, 'presales: 7')}", "routing.queues.0.skills.presales"],
        [f"{policy_path}:{_line(policy, 'target: pr')}", "escalation.triggers.crisis.target"],
    ]
    # with a valid routing section and policy model, the targets are checked in the same pass as the channels
    routing = routing.replace("presales: 7", "presales: 1").replace("queue: nowhere", "queue: presales")
    policy = policy.replace("target: pr\n", "target: crisis\n")
    routing_path, policy_path = _files(tmp_path, routing=routing, policy=policy)
    assert [e.split(": ")[0:2] for e in check([routing_path, policy_path]).errors] == [
        [f"{routing_path}:2", "channels.webchat.0.secrets"],
        [f"{policy_path}:{_line(policy, 'queue: tech,')}", "escalation.targets.engineers.queue"],
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("escalation:\n  targets: [unclosed\n", 3, "expected ',' or ']', but got '<stream end>'"),
        ("escalation:\n  targets: a\n    levels: b\n", 3, "mapping values are not allowed here"),
        ("escalation:\n  targets: {}\n  note: \x07\n", 3, "character #x0007: special characters are not allowed"),
    ],
)
def test_a_yaml_syntax_error_names_the_real_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    routing = ROUTING.replace("{channel: webchat, queue: presales}", "{channel: webchat, queue: nowhere}")
    routing_path, policy_path = _files(tmp_path, routing=routing, policy=text)
    errors = check([routing_path, policy_path]).errors
    assert len(errors) == 2  # the other file is still checked
    assert errors[0].startswith(f"{policy_path}:{line}: not valid YAML: {message}")
    assert "<unicode string>" not in errors[0] and "\n" not in errors[0]
    assert errors[1].startswith(f"{routing_path}:{_line(routing, 'nowhere')}: routing.routes.0.queue: ")


def test_a_section_in_two_files_is_an_error_naming_both(tmp_path: Path) -> None:
    routing_path, policy_path = _files(tmp_path, policy=POLICY + "routing:\n  default_queue: presales\n")
    errors = check([routing_path, policy_path]).errors
    assert errors == [
        f"{policy_path}:{len(POLICY.splitlines()) + 1}: routing: also in {routing_path}:1; "
        "a section must be in one file only"
    ]


def test_unknown_sections_are_warned_about_and_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "kefu.yaml", ROUTING + POLICY + "routng: {}\n")
    report = check([path, path])
    assert report.errors == []
    line = len((ROUTING + POLICY).splitlines()) + 1
    assert f"{path}:{line}: routng: not a section kefu reads (channels, routing, escalation, auth); ignored" in (
        report.warnings
    )


def test_a_required_section_that_no_file_has_is_an_error(tmp_path: Path) -> None:
    routing_path, _ = _files(tmp_path)
    assert check([routing_path], required=["escalation"]).errors == [
        f"{routing_path}: no escalation section (kefu needs one here)"
    ]
    policy_path = _write(tmp_path, "policy.yaml", POLICY)
    report = check([policy_path])
    assert report.errors == []
    assert report.warnings == [
        f"{policy_path}:2: escalation.targets: not checked against the router's groups and queues: "
        "give the file with the routing section too"
    ]


def test_the_command_takes_several_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routing_path, policy_path = _files(tmp_path)
    assert main([routing_path, policy_path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "OK" and all(line.startswith("warning: ") for line in out[1:])
    bad = _write(tmp_path, "bad.yaml", POLICY.replace("queue: technical,", "queue: tech,"))
    assert cli.main(["config", "validate", str(routing_path), str(bad)]) == 1
    assert capsys.readouterr().out.startswith(f"{bad}:{_line(POLICY, 'queue: technical,')}: escalation.targets.")


def test_at_start_refuses_on_an_error_and_logs_the_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    routing_path, policy_path = _files(tmp_path)
    with caplog.at_level(logging.WARNING):
        report = at_start([routing_path, policy_path], required=["routing", "escalation"], log=logging.getLogger("t"))
    assert [r.getMessage() for r in caplog.records] == [f"configuration: {w}" for w in report.warnings]
    bad = _write(tmp_path, "bad.yaml", POLICY.replace("group: crisis,", "group: pr,"))
    with pytest.raises(ConfigError) as refused:
        at_start([routing_path, bad], required=["escalation"], log=None)
    assert refused.value.errors == [
        f"{bad}:{_line(POLICY, 'crisis: {group')}: escalation.targets.crisis.group: unknown router group 'pr'; "
        "the router's are ['crisis', 'engineers', 'tier1']"
    ]


def test_each_service_refuses_to_start_on_an_invalid_configuration(tmp_path: Path) -> None:
    routing_path, _ = _files(tmp_path)
    bad_policy = _write(tmp_path, "bad.yaml", POLICY.replace("queue: technical,", "queue: tech,"))
    with pytest.raises(ConfigError, match=r"escalation\.targets\.engineers\.queue: unknown router queue 'tech'"):
        assemble.escalation_config(EscalationSettings(config_path=routing_path, policy_path=bad_policy))
    good = assemble.escalation_config(EscalationSettings(config_path=routing_path, policy_path=_files(tmp_path)[1]))
    assert good.section("escalation", EscalationPolicy).targets["crisis"].priority == 100
    unservable = _write(tmp_path, "unservable.yaml", ROUTING.replace("wechat: 1}", "email: 1}"))
    with pytest.raises(ConfigError, match=r"routing\.queues\.0\.channels\.1: no configured agent"):
        assemble.router_config(RouterSettings(config_path=unservable))
    with pytest.raises(ConfigError, match=r"no channels section"):
        assemble.channels_config(ChannelsSettings(config_path=routing_path))


def test_the_service_commands_refuse_with_one_line_per_problem_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    routing_path, _ = _files(tmp_path)
    bad_policy = _write(
        tmp_path,
        "bad.yaml",
        POLICY.replace("queue: technical,", "queue: tech,").replace("group: crisis,", "group: pr,"),
    )
    monkeypatch.setenv("KEFU_CONFIG_PATH", str(routing_path))
    monkeypatch.setenv("KEFU_POLICY_PATH", str(bad_policy))
    assert cli.main(["escalation"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines() == [
        "kefu: configuration error:",
        f"{bad_policy}:{_line(POLICY, 'engineers: {group')}: escalation.targets.engineers.queue: unknown router queue "
        "'tech'; the router's are ['crisis', 'presales', 'technical']",
        f"{bad_policy}:{_line(POLICY, 'crisis: {group')}: escalation.targets.crisis.group: unknown router group 'pr'; "
        "the router's are ['crisis', 'engineers', 'tier1']",
    ]
