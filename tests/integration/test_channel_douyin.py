"""The Douyin webhook against a real Kafka-protocol broker and PostgreSQL: 200 only once the broker
holds the contact; the URL verification echoed; events that are not contacts acknowledged and
dropped; every bad input a clear 4xx with nothing published; 503 when the broker is gone."""

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from contracts import CONTACTS, Channel, ContactEvent
from services.channels.config import ChannelsSettings
from tests.integration.support import assert_refused_then_still_serving, read_topic, serving
from tools.assemble import channels_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

URL = "/webhooks/douyin/shop"
CLIENT_KEY = "awkefutest0001"
SECRET = "dy-test-secret-5c1e0b7d"
OTHER_SECRET = "dy-other-secret-99aa"
CUSTOMER = "_000f9pF8lTroNtA9pfLjPohf1qIUzLdiWRs"
ACCOUNT = "_000bfeGRgbkwDMMksxyg4auRqXAPGIZk1pl"

CONFIG = f"""
channels:
  douyin:
    - {{id: shop, name: 抖音小店 Test shop, client_key: {CLIENT_KEY}, client_secret: "{SECRET}"}}
    - {{id: other, name: Other app, client_key: awkefutest0002, client_secret: "{OTHER_SECRET}"}}
routing:
  default_queue: q
  queues: [{{id: q, name: Q, channels: [webchat, email, wechat, douyin, phone]}}]
"""


@pytest.fixture
def settings(database_url: str, broker: EmbeddedKafka, tmp_path: Path) -> ChannelsSettings:
    path = tmp_path / "kefu.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return ChannelsSettings(database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=path)


def sign(body: bytes, secret: str = SECRET) -> str:
    return hashlib.sha1(secret.encode() + body).hexdigest()  # noqa: S324 (Douyin's scheme)


def headers(body: bytes, *, secret: str = SECRET, msg_id: str | None = "msg-1", **extra: str) -> dict[str, str]:
    found = {"content-type": "application/json", "x-douyin-signature": sign(body, secret), **extra}
    if msg_id is not None:
        found["msg-id"] = msg_id
    return found


def content(text: str | None = "请问空调什么时候发货?", **fields: Any) -> dict[str, Any]:
    return {
        "conversation_short_id": "@9Vxc1/yDU8sqaS+gN4koEc7912foPPiLPZVyrQmgKVQabPH460zdRmYqig357zEB==",
        "server_message_id": "@9Vxc1/yDU8sqaS+gN4koEc7912foPPyAPpF2rgykLFgbafb560zdRmYqig357zEB==",
        "conversation_type": 1,
        "create_time": 1681303285997,
        "message_type": "text",
        "text": text,
        "user_infos": [{"open_id": CUSTOMER, "nick_name": "刘东"}, {"open_id": ACCOUNT, "nick_name": "小店"}],
        **fields,
    }


def event_body(
    event: str = "im_receive_msg", payload: Any = None, *, as_string: bool = False, **envelope: Any
) -> bytes:
    payload = content() if payload is None else payload
    document = {
        "event": event,
        "client_key": CLIENT_KEY,
        "from_user_id": CUSTOMER,
        "to_user_id": ACCOUNT,
        "content": json.dumps(payload, ensure_ascii=False) if as_string else payload,
        "log_id": "2023429834752345783",
        **envelope,
    }
    return json.dumps(document, ensure_ascii=False).encode()


async def contacts(broker: EmbeddedKafka, at_least: int = 0) -> list[Any]:
    return await read_topic(broker.bootstrap, CONTACTS, at_least=at_least, timeout=0.5)


@pytest.mark.parametrize("as_string", [False, True], ids=["content-object", "content-json-string"])
async def test_a_customer_message_is_on_the_broker_before_the_200(
    broker: EmbeddedKafka, settings: ChannelsSettings, as_string: bool
) -> None:
    body = event_body(as_string=as_string)
    async with serving(create_app(settings)) as client:
        response = await client.post(URL, content=body, headers=headers(body, msg_id="msg-1"))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted"
        # acks=all was awaited before answering: the record is readable right away
        (record,) = await contacts(broker, at_least=1)
    event = ContactEvent.model_validate_json(record.value)
    assert record.key == f"douyin:shop:{CUSTOMER}".encode()
    assert str(event.event_id) == response.json()["event_id"]
    assert event.channel is Channel.DOUYIN
    assert event.account_id == "shop"
    assert event.dedup_key == "msg-1"
    assert event.customer.platform_id == CUSTOMER
    assert event.customer.display_name == "刘东"
    assert event.message.text == "请问空调什么时候发货?"
    assert event.occurred_at.year == 2023
    assert event.metadata["account_open_id"] == ACCOUNT
    assert event.metadata["server_message_id"] == content()["server_message_id"]


async def test_retries_carry_one_event_id_and_log_id_stands_in_for_a_missing_msg_id(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    body = event_body()
    async with serving(create_app(settings)) as client:
        ids = set()
        for _ in range(3):
            response = await client.post(URL, content=body, headers=headers(body, msg_id="msg-x"))
            assert response.status_code == 200
            ids.add(response.json()["event_id"])
        assert len(ids) == 1
        without = await client.post(URL, content=body, headers=headers(body, msg_id=None))
        assert without.status_code == 200
    records = [ContactEvent.model_validate_json(r.value) for r in await contacts(broker, at_least=4)]
    assert [e.dedup_key for e in records] == ["msg-x", "msg-x", "msg-x", "2023429834752345783"]


async def test_a_customer_image_arrives_as_attachment_metadata(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    image = content(message_type="image", text=None, resource_type="image/jpeg", resource_url="https://p3.a/1.jpeg")
    body = event_body(payload=image, as_string=True)
    async with serving(create_app(settings)) as client:
        response = await client.post(URL, content=body, headers=headers(body))
        assert response.status_code == 200, response.text
    (record,) = await contacts(broker, at_least=1)
    event = ContactEvent.model_validate_json(record.value)
    assert event.message.text == ""
    assert [(a.name, a.content_type, a.url) for a in event.message.attachments] == [
        ("image", "image/jpeg", "https://p3.a/1.jpeg")
    ]


@pytest.mark.parametrize("as_string", [False, True], ids=["content-object", "content-json-string"])
@pytest.mark.parametrize("client_key", ["", CLIENT_KEY])
async def test_the_url_verification_echoes_the_challenge(
    broker: EmbeddedKafka, settings: ChannelsSettings, as_string: bool, client_key: str
) -> None:
    # the documented request: {"event": "verify_webhook", "client_key": "", "content": {"challenge": 12345}}
    document = {"event": "verify_webhook", "client_key": client_key, "content": {"challenge": 12345}}
    if as_string:
        document["content"] = json.dumps(document["content"])
    body = json.dumps(document).encode()
    async with serving(create_app(settings)) as client:
        response = await client.post(URL, content=body, headers=headers(body, msg_id=None))
    assert response.status_code == 200
    assert response.json() == {"challenge": 12345}
    assert response.headers["content-type"] == "application/json"
    assert await contacts(broker) == []


@pytest.mark.parametrize(
    "event",
    ["im_send_msg", "im_enter_direct_msg", "im_recall_msg", "im_group_receive_msg", "im_message_read", "new_event"],
)
async def test_events_that_are_not_contacts_are_acknowledged_and_dropped(
    broker: EmbeddedKafka, settings: ChannelsSettings, event: str
) -> None:
    body = event_body(event, from_user_id=ACCOUNT, to_user_id=CUSTOMER) if event == "im_send_msg" else event_body(event)
    async with serving(create_app(settings)) as client:
        response = await client.post(URL, content=body, headers=headers(body))
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "event": event}
    assert await contacts(broker) == []


def _length_extension(body: bytes) -> bytes:
    """``body`` extended the way a SHA-1 length-extension forgery must: glue padding, then more JSON."""
    glue = (
        b"\x80" + b"\x00" * ((55 - (len(SECRET) + len(body))) % 64) + struct.pack(">Q", (len(SECRET) + len(body)) * 8)
    )
    return body + glue + b',"event":"im_receive_msg"}'


def _bad_requests() -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    good = event_body()

    def signed(body: bytes, **kwargs: Any) -> tuple[bytes, dict[str, str]]:
        return body, headers(body, **kwargs)

    cases: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
        ("unknown app", "/webhooks/douyin/nope", good, headers(good), 404, "unknown_account"),
        ("no signature", URL, good, {"content-type": "application/json", "msg-id": "m"}, 401, "bad_signature"),
        ("wrong signature", URL, good, headers(good, secret=OTHER_SECRET), 401, "bad_signature"),
        ("malformed signature", URL, good, {**headers(good), "x-douyin-signature": "sha1=abc"}, 401, "bad_signature"),
        ("tampered body", URL, good.replace("发货".encode(), "退款".encode()), headers(good), 401, "bad_signature"),
        ("other app's client_key", URL, *signed(event_body(client_key="awkefutest0002")), 401, "bad_signature"),
        ("not json", URL, *signed(b"{this is not json"), 400, "malformed_body"),
        ("invalid utf-8", URL, *signed(b'{"event": "im_receive_msg", "text": "\xff\xfe"}'), 400, "malformed_body"),
        ("sha1 length extension", URL, *signed(_length_extension(good)), 400, "malformed_body"),
        ("json array", URL, *signed(b"[1, 2]"), 422, "invalid_payload"),
        ("no event", URL, *signed(json.dumps({"content": content()}).encode()), 422, "invalid_payload"),
        ("no message id", URL, *signed(event_body(payload={"text": "hi"})), 422, "invalid_payload"),
        ("no sender", URL, *signed(event_body(from_user_id=None)), 422, "invalid_payload"),
        ("content not json", URL, *signed(event_body(content='{"text": "hi"')), 422, "invalid_payload"),
        ("content not an object", URL, *signed(event_body(content="[1]")), 422, "invalid_payload"),
        ("no challenge", URL, *signed(event_body("verify_webhook", {"nonce": 1})), 422, "invalid_payload"),
        ("msg-id too long", URL, *signed(good, msg_id="m" * 600), 422, "invalid_payload"),
        ("too large", URL, b"{" + b" " * 300_000 + b"}", headers(good), 413, "body_too_large"),
        ("form body", URL, good, {**headers(good), "content-type": "application/x-www-form-urlencoded"}, 415, "unsup"),
        ("no content type", URL, good, {"x-douyin-signature": sign(good)}, 415, "unsupported_media_type"),
    ]
    return cases


# signed when the test runs, not when pytest collects it: a slow run would otherwise send stale timestamps
@pytest.mark.parametrize("name", [case[0] for case in _bad_requests()])
async def test_bad_input_is_refused_and_nothing_is_published(
    broker: EmbeddedKafka, settings: ChannelsSettings, name: str
) -> None:
    _, url, body, request_headers, status, code = next(case for case in _bad_requests() if case[0] == name)
    good = event_body()
    async with serving(create_app(settings)) as client:
        await assert_refused_then_still_serving(
            client,
            (url, body, request_headers),
            status=status,
            code=code,
            good=(URL, good, headers(good, msg_id="after")),
            secrets=(SECRET, OTHER_SECRET),
        )
    records = await contacts(broker, at_least=1)
    assert [ContactEvent.model_validate_json(r.value).dedup_key for r in records] == ["after"], (
        f"{name}: something was published"
    )


async def test_a_vanished_broker_gets_503_and_never_a_200(broker: EmbeddedKafka, settings: ChannelsSettings) -> None:
    app = create_app(settings.model_copy(update={"publish_timeout_seconds": 1.0}))
    async with serving(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        broker.stop()
        body = event_body()
        response = await client.post(URL, content=body, headers=headers(body))
        assert response.status_code == 503
        assert response.json()["error"] == "broker_unavailable"
        assert response.headers["retry-after"] == "5"
