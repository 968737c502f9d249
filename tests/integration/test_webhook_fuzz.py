"""Fuzzing every webhook endpoint of the running channels service: whatever arrives, the answer is
never a 5xx (503 aside, which only a missing broker may cause) and never a stack trace."""

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kefu.config_file import load_section
from kefu.embedded import EmbeddedKafka, free_port
from kefu.settings import EXAMPLE_CONFIG
from services.channels.config import ChannelsSettings
from services.channels.domain.accounts import ChannelsConfig
from services.channels.entrypoints.app import create_app
from tests.integration.support import server_in_thread

pytestmark = pytest.mark.integration

MEDIA_TYPES = [
    "application/json",
    "text/xml",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "message/rfc822",
    "text/plain",
    "",
]
SIGNATURE_HEADERS = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-douyin-signature",
    "msg-id",
    "x-twilio-signature",
    "authorization",
    "x-forwarded-proto",
    "x-forwarded-host",
]


@pytest.fixture
def service_url(database_url: str, broker: EmbeddedKafka) -> Iterator[str]:
    port = free_port()
    settings_ = ChannelsSettings(
        database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=EXAMPLE_CONFIG, port=port
    )
    with server_in_thread(create_app(settings_), port, lifespan="on", name="channels") as url:
        yield url


def _paths() -> list[str]:
    """Every webhook path of the app, with configured account ids and a few unknown ones."""
    config = load_section(EXAMPLE_CONFIG, "channels", ChannelsConfig)
    ids = {name: [a.id for a in getattr(config, name)] for name in type(config).model_fields}
    paths = []
    for path in create_app(ChannelsSettings(config_path=EXAMPLE_CONFIG)).openapi()["paths"]:
        if not path.startswith("/webhooks/"):
            continue
        channel = path.split("/")[2].replace("-", "_")
        for account in [*ids.get(channel, []), *ids.get("wecom_kf", [])[:1], "no-such-account", "%00", ".."]:
            paths.append(re.sub(r"\{[^}]+\}", account, path))
    return sorted(set(paths))


def _body() -> st.SearchStrategy[bytes]:
    text = st.text(max_size=300)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
        max_leaves=12,
    )
    xml = st.builds(
        lambda tag, inner: f"<xml><{tag}>{inner}</{tag}><Encrypt>{inner}</Encrypt></xml>".encode(),
        st.sampled_from(["ToUserName", "MsgType", "Content", "MsgId", "Event"]),
        st.text(alphabet=st.characters(blacklist_characters="<>&"), max_size=60),
    )
    return st.one_of(
        st.binary(max_size=400),
        text.map(str.encode),
        json_values.map(lambda v: __import__("json").dumps(v).encode()),
        xml,
        st.just(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><a>&a;</a></xml>'),
        st.just(b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--xyz--\r\n'),
        st.dictionaries(st.sampled_from(["CallSid", "From", "To", "CallStatus", "token"]), text, max_size=5).map(
            lambda d: httpx.QueryParams(d).__str__().encode()
        ),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_input_makes_a_webhook_fail_with_a_5xx(service_url: str, data: Any) -> None:
    path = data.draw(st.sampled_from(_PATHS))
    method = data.draw(st.sampled_from(["POST", "POST", "POST", "GET"]))
    headers = {"content-type": data.draw(st.sampled_from(MEDIA_TYPES))}
    for name in data.draw(st.lists(st.sampled_from(SIGNATURE_HEADERS), max_size=4, unique=True)):
        headers[name] = data.draw(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60))
    query = data.draw(
        st.dictionaries(
            st.sampled_from(["signature", "timestamp", "nonce", "echostr", "msg_signature", "encrypt_type", "openid"]),
            st.text(max_size=30),
            max_size=4,
        )
    )
    body = data.draw(_body())
    with httpx.Client(base_url=service_url, timeout=10) as client:
        response = client.request(method, path, params=query, headers=headers, content=body)
    assert response.status_code < 500, (method, path, headers, body[:200], response.status_code, response.text[:300])
    assert "Traceback" not in response.text


_PATHS = _paths()
