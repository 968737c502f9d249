"""The configuration file: the example loads; mistakes are refused with the file and field named."""

from pathlib import Path

import pytest

from contracts import Channel
from kefu.config_file import ConfigError, load_section
from kefu.settings import EXAMPLE_CONFIG
from services.channels.accounts import ChannelsConfig
from services.router.domain.config import RoutingConfig


def test_the_example_configuration_loads() -> None:
    routing = load_section(EXAMPLE_CONFIG, "routing", RoutingConfig)
    channels = load_section(EXAMPLE_CONFIG, "channels", ChannelsConfig)
    assert [site.id for site in channels.webchat] == ["demo"]
    assert {agent.id for agent in routing.agents} >= {"alice", "bob"}
    assert routing.queue_for(Channel.WEBCHAT, "demo") == "presales"
    assert routing.queue_for(Channel.EMAIL, "anything") == "returns"
    assert routing.queue_for(Channel.WECHAT, "anything") == routing.default_queue


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kefu.yaml"
    path.write_text(text, encoding="utf-8")
    return path


QUEUE = "queues: [{id: q, name: Q, channels: [webchat]}]"


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (f"{{default_queue: nope, {QUEUE}}}", "unknown queue 'nope'"),
        ("{default_queue: q, queues: [{id: q, name: Q, channels: [fax]}]}", r"routing\.queues\.0\.channels\.0"),
        (
            "{default_queue: q, queues: [{id: q, name: Q, channels: [webchat], skills: {presales: 9}}]}",
            "minimum proficiency must be 1-5",
        ),
        (f"{{default_queue: q, {QUEUE}, agents: [{{id: a, name: A, colour: red}}]}}", r"routing\.agents\.0\.colour"),
        (
            f"{{default_queue: q, {QUEUE}, agents: [{{id: a, name: A}}, {{id: a, name: B}}]}}",
            "agent ids must be unique",
        ),
    ],
)
def test_mistakes_name_the_file_and_field(tmp_path: Path, routing: str, message: str) -> None:
    path = _write(tmp_path, f"routing: {routing}\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_section(path, "routing", RoutingConfig)
    assert str(caught.value).startswith(f"{path}:1: routing")  # file, line, then the field


def test_unreadable_and_malformed_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_section(tmp_path / "missing.yaml", "routing", RoutingConfig)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_section(_write(tmp_path, "routing: [unclosed\n"), "routing", RoutingConfig)
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_section(_write(tmp_path, "- a list\n"), "routing", RoutingConfig)


def test_a_site_needs_a_secret(tmp_path: Path) -> None:
    path = _write(tmp_path, "channels: {webchat: [{id: s, name: S, secrets: []}]}\n")
    with pytest.raises(ConfigError, match=r"channels\.webchat\.0\.secrets"):
        load_section(path, "channels", ChannelsConfig)


def test_wechat_and_wecom_accounts_may_not_share_an_id(tmp_path: Path) -> None:
    account = "{id: x, name: X, token: QDG6eK, appid: wx5823bf96d3bd56c7}"
    kf = "{id: x, name: X, corp_id: wx5823bf96d3bd56c7, secret: s, token: QDG6eK, encoding_aes_key: " + "a" * 43 + "}"
    path = _write(tmp_path, f"channels: {{wechat: [{account}], wecom_kf: [{kf}]}}\n")
    with pytest.raises(ConfigError, match="share account ids"):
        load_section(path, "channels", ChannelsConfig)
