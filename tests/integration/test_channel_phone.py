"""Twilio voice webhooks against a real Kafka-protocol broker and PostgreSQL: TwiML only once the
broker holds the call; every bad input a clear 4xx with nothing published; 503 when the broker is gone."""

import base64
import hashlib
import hmac
from pathlib import Path
from urllib.parse import urlencode

import defusedxml.ElementTree as SafeET
import pytest

from contracts import CONTACTS, ContactEvent, ContactEventKind
from services.channels.config import ChannelsSettings
from tests.integration.support import assert_refused_then_still_serving, read_topic, serving
from tools.assemble import channels_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

TOKEN = "fake0auth0token0for0tests0000000"
PROXIED_TOKEN = "another0fake0token0000000000000"
PUBLIC = "https://kefu.example.com"
URL = "/webhooks/phone/hotline"
STATUS_URL = "/webhooks/phone/hotline/status"
SID = "CA" + "0123456789abcdef" * 2
WAIT_URL = "https://twimlets.com/holdmusic?Bucket=com.twilio.music.classical&Message=hi"

CONFIG = f"""
channels:
  phone:
    - id: hotline
      name: 客服热线 Service hotline
      auth_token: {TOKEN}
      public_url: {PUBLIC}
      numbers: ["+86 21 6000 0000"]
      greeting: '您好 <欢迎> & "welcome"'
      queue_name: 售后 <queue>
      wait_url: "{WAIT_URL}"
    - id: proxied
      name: Behind a proxy
      auth_token: {PROXIED_TOKEN}
      public_url: http://kefu-channels.internal:8000
      trust_forwarded_headers: true
routing:
  default_queue: q
  queues: [{{id: q, name: Q, channels: [webchat, email, wechat, douyin, phone]}}]
"""


def sign(token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's scheme, written out independently of the adapter."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def call(status: str = "ringing", sid: str = SID, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "f" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": status,
        "Called": "+862160000000",
        "Caller": "+8613800138000",
        "CallerName": "张伟 <Hangup/>",
        "Direction": "inbound",
        "From": "+8613800138000",
        "FromCity": "SHANGHAI",
        "FromCountry": "CN",
        "To": "+862160000000",
        **extra,
    }


def repeated() -> tuple[bytes, dict[str, str]]:
    """A correctly signed body that names CallSid twice."""
    pairs = [*call().items(), ("CallSid", "CA" + "1" * 32)]
    data = PUBLIC + URL + "".join(name + value for name, value in sorted(pairs))
    signature = base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()
    return urlencode(pairs).encode(), {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": signature,
    }


def signed(
    params: dict[str, str], path: str = URL, *, token: str = TOKEN, public: str = PUBLIC, query: str = ""
) -> tuple[bytes, dict[str, str]]:
    """A form body and the headers Twilio would send for it."""
    url = public + path + (f"?{query}" if query else "")
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": sign(token, url, params),
    }
    return urlencode(params).encode(), headers


@pytest.fixture
def settings(database_url: str, broker: EmbeddedKafka, tmp_path: Path) -> ChannelsSettings:
    path = tmp_path / "kefu.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return ChannelsSettings(database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=path)


async def test_an_incoming_call_is_on_the_broker_before_the_twiml(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    body, headers = signed(call())
    async with serving(create_app(settings)) as client:
        response = await client.post(URL, content=body, headers=headers)
        assert response.status_code == 200, response.text
        (record,) = await read_topic(broker.bootstrap, CONTACTS, at_least=1, timeout=0.5)
    assert response.headers["content-type"].startswith("text/xml")
    root = SafeET.fromstring(response.content)
    assert [(e.tag, e.text, e.attrib) for e in root] == [
        ("Say", '您好 <欢迎> & "welcome"', {"language": "zh-CN"}),
        ("Enqueue", "售后 <queue>", {"waitUrl": WAIT_URL}),
    ]
    assert b"Hangup" not in response.content  # nothing the caller sent reaches the TwiML
    assert record.key == f"phone:hotline:{SID}".encode()
    event = ContactEvent.model_validate_json(record.value)
    assert event.kind is ContactEventKind.MESSAGE
    assert event.dedup_key == f"{SID}:ringing"
    assert event.customer.platform_id == "+8613800138000"
    assert event.customer.display_name == "张伟 <Hangup/>"
    assert event.message.text == "incoming call"
    assert event.metadata["to"] == "+862160000000"
    assert event.metadata["caller_city"] == "SHANGHAI"


async def test_a_hang_up_in_the_queue_is_an_abandonment_on_the_same_conversation(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    async with serving(create_app(settings)) as client:
        body, headers = signed(call())
        assert (await client.post(URL, content=body, headers=headers)).status_code == 200
        # a progress callback is acknowledged and not published
        body, headers = signed(call("in-progress"), STATUS_URL)
        answered = await client.post(STATUS_URL, content=body, headers=headers)
        assert (answered.status_code, answered.content) == (204, b"")
        ended = call("canceled", CallDuration="0", Timestamp="Sun, 22 Nov 2026 09:31:10 +0000")
        body, headers = signed(ended, STATUS_URL)
        response = await client.post(STATUS_URL, content=body, headers=headers)
        assert (response.status_code, response.content) == (204, b"")
        records = await read_topic(broker.bootstrap, CONTACTS, at_least=2, timeout=0.5)
    assert [r.key for r in records] == [f"phone:hotline:{SID}".encode()] * 2
    events = [ContactEvent.model_validate_json(r.value) for r in records]
    assert [e.kind for e in events] == [ContactEventKind.MESSAGE, ContactEventKind.ABANDONED]
    assert events[1].dedup_key == f"{SID}:canceled"
    assert events[1].metadata["call_duration"] == "0"


async def test_retries_of_one_request_carry_one_event_id(broker: EmbeddedKafka, settings: ChannelsSettings) -> None:
    body, headers = signed(call())
    async with serving(create_app(settings)) as client:
        for _ in range(2):
            assert (await client.post(URL, content=body, headers=headers)).status_code == 200
        records = await read_topic(broker.bootstrap, CONTACTS, at_least=2, timeout=0.5)
    assert len({ContactEvent.model_validate_json(r.value).event_id for r in records}) == 1


async def test_the_signed_url_includes_the_query_string(broker: EmbeddedKafka, settings: ChannelsSettings) -> None:
    body, headers = signed(call(), query="lang=zh&x=%2F")
    async with serving(create_app(settings)) as client:
        response = await client.post(URL + "?lang=zh&x=%2F", content=body, headers=headers)
        assert response.status_code == 200, response.text
        unsigned_query = await client.post(URL + "?lang=en&x=%2F", content=body, headers=headers)
        assert unsigned_query.status_code == 401
    assert len(await read_topic(broker.bootstrap, CONTACTS, at_least=1, timeout=0.5)) == 1


async def test_trusted_forwarded_headers_rebuild_the_public_url(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    path = "/webhooks/phone/proxied"
    body, headers = signed(call(), path, token=PROXIED_TOKEN, public="https://phone.example.org")
    forwarded = {**headers, "x-forwarded-proto": "https", "x-forwarded-host": "phone.example.org"}
    async with serving(create_app(settings)) as client:
        response = await client.post(path, content=body, headers=forwarded)
        assert response.status_code == 200, response.text
        # without the headers the URL is the configured one, which Twilio did not sign
        assert (await client.post(path, content=body, headers=headers)).status_code == 401
    (record,) = await read_topic(broker.bootstrap, CONTACTS, at_least=1, timeout=0.5)
    assert record.key == f"phone:proxied:{SID}".encode()


def _bad_requests() -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    good_body, good = signed(call())
    form = {"content-type": "application/x-www-form-urlencoded"}
    no_sid = {k: v for k, v in call().items() if k != "CallSid"}
    bad_escape = good_body + b"&Digits=%ZZ"
    return [
        ("unknown line", "/webhooks/phone/nope", good_body, good, 404, "unknown_account"),
        ("unknown line status", "/webhooks/phone/nope/status", good_body, good, 404, "unknown_account"),
        ("no signature", URL, good_body, form, 401, "bad_signature"),
        ("wrong token", URL, *signed(call(), token="some-other-token"), 401, "bad_signature"),
        ("tampered parameter", URL, good_body.replace(b"ringing", b"queued"), good, 401, "bad_signature"),
        ("signed for another URL", URL, *signed(call(), "/webhooks/phone/other"), 401, "bad_signature"),
        ("signed for another host", URL, *signed(call(), public="https://evil.example"), 401, "bad_signature"),
        (
            "forwarded headers ignored unless trusted",
            URL,
            signed(call(), public="https://evil.example")[0],
            {
                **signed(call(), public="https://evil.example")[1],
                "x-forwarded-proto": "https",
                "x-forwarded-host": "evil.example",
            },
            401,
            "bad_signature",
        ),
        ("status without signature", STATUS_URL, signed(call("completed"), STATUS_URL)[0], form, 401, "bad_signature"),
        ("missing CallSid", URL, *signed(no_sid), 422, "invalid_payload"),
        ("malformed CallSid", URL, *signed(call(sid="CA123")), 422, "invalid_payload"),
        ("unknown CallStatus", URL, *signed(call("exploded")), 422, "invalid_payload"),
        ("ended call on the voice URL", URL, *signed(call("completed")), 422, "invalid_payload"),
        ("number not on the line", URL, *signed(call(To="+862160009999")), 422, "invalid_payload"),
        ("repeated parameter", URL, *repeated(), 422, "invalid_payload"),
        ("invalid utf-8", URL, good_body + b"&CallerName=\xff\xfe", good, 400, "malformed_body"),
        ("invalid percent-encoding", URL, bad_escape, good, 400, "malformed_body"),
        ("percent-encoded non-utf-8", URL, good_body + b"&CallerName=%FF%FE", good, 400, "malformed_body"),
        ("json body", URL, b'{"CallSid": "CA1"}', {**good, "content-type": "application/json"}, 415, "unsupported"),
        ("no content type", URL, good_body, {"x-twilio-signature": good["x-twilio-signature"]}, 415, "unsupported"),
        ("too large", URL, b"CallerName=" + b"a" * 300_000, good, 413, "body_too_large"),
    ]


BAD = _bad_requests()


@pytest.mark.parametrize(("name", "url", "body", "headers", "status", "code"), BAD, ids=[b[0] for b in BAD])
async def test_bad_input_is_refused_and_nothing_is_published(
    broker: EmbeddedKafka,
    settings: ChannelsSettings,
    name: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    good_body, good = signed(call(sid="CA" + "9" * 32))
    async with serving(create_app(settings)) as client:
        await assert_refused_then_still_serving(
            client, (url, body, headers), status=status, code=code, good=(URL, good_body, good), secrets=(TOKEN,)
        )
    records = await read_topic(broker.bootstrap, CONTACTS, at_least=1, timeout=0.5)
    assert len(records) == 1, f"{name}: something was published"


async def test_a_vanished_broker_gets_503_and_never_twiml(broker: EmbeddedKafka, settings: ChannelsSettings) -> None:
    app = create_app(settings.model_copy(update={"publish_timeout_seconds": 1.0}))
    async with serving(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        broker.stop()
        body, headers = signed(call())
        response = await client.post(URL, content=body, headers=headers)
        assert response.status_code == 503
        assert response.json()["error"] == "broker_unavailable"
        assert response.headers["retry-after"] == "5"
        assert b"<Response" not in response.content
        body, headers = signed(call("no-answer"), STATUS_URL)
        status = await client.post(STATUS_URL, content=body, headers=headers)
        assert status.status_code == 503
