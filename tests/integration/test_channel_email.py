"""The email webhook against a real Kafka-protocol broker and PostgreSQL (Mailgun replay tokens):
SendGrid, Mailgun and raw posts answer 200 only once the contact is on the broker; every bad input
is a clear 4xx with nothing published; a stopped broker means 503."""

import base64
import hashlib
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import CONTACTS, ContactEvent
from services.channels.common.orm import replay_tokens
from services.channels.common.store import first_use
from services.channels.config import ChannelsSettings
from services.channels.email.auth import mailgun_signature
from tests.integration.support import assert_refused_then_still_serving, eventually, read_topic, serving
from tools.assemble import channels_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

SENDGRID_AUTH = ("sendgrid", "fake-sendgrid-password")
MAILGUN_KEY = "key-fake-mailgun-signing-key"
RAW_TOKEN = "fake-raw-bearer-token"

CONFIG = f"""
channels:
  email:
    - id: sg
      name: SendGrid inbox
      address: support@shop.example.com
      provider: sendgrid
      basic_auth: {{username: {SENDGRID_AUTH[0]}, password: {SENDGRID_AUTH[1]}}}
    - id: mg
      name: Mailgun inbox
      address: help@mg.shop.example.com
      provider: mailgun
      mailgun_signing_key: {MAILGUN_KEY}
    - id: raw
      name: Raw inbox
      address: service@shop.example.com
      provider: raw
      bearer_token: {RAW_TOKEN}
      max_body_bytes: 65536
      max_attachment_bytes: 16384
routing:
  default_queue: q
  queues: [{{id: q, name: Q, channels: [webchat, email, wechat, douyin, phone]}}]
"""


@pytest.fixture
def settings(database_url: str, broker: EmbeddedKafka, tmp_path: Path) -> ChannelsSettings:
    path = tmp_path / "kefu.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return ChannelsSettings(database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=path)


# --- request builders ------------------------------------------------------------------------------

BOUNDARY = "----kefuFormBoundary7MA4YWxkTrZu0gW"
FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form_body(fields: dict[str, bytes], files: Sequence[tuple[str, str, str, bytes]] = ()) -> bytes:
    out = b""
    for name, value in fields.items():
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
    for name, filename, content_type, data in files:
        out += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{BOUNDARY}--\r\n".encode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


SG_HEADERS = {"content-type": FORM_TYPE, "authorization": basic(*SENDGRID_AUTH)}
RAW_HEADERS = {"content-type": "message/rfc822", "authorization": f"Bearer {RAW_TOKEN}"}


def sendgrid_fields(message_id: str = "sg-1@client.example", text: str = "我的空调不制冷了") -> dict[str, bytes]:
    return {
        "headers": (
            f"Message-ID: <{message_id}>\r\nDate: Sun, 22 Nov 2026 17:30:00 +0800\r\n"
            "From: =?UTF-8?B?5byg5Lyf?= <zhang.wei@example.com>\r\n"
        ).encode(),
        "from": "张伟 <Zhang.Wei@Example.com>".encode(),
        "to": b"support@shop.example.com",
        "subject": "空调坏了".encode("gbk"),
        "text": f"{text}\n\n> 旧邮件".encode("gbk"),
        "html": b"",
        "envelope": b'{"to": ["support@shop.example.com"], "from": "zhang.wei@example.com"}',
        "charsets": b'{"to": "UTF-8", "from": "UTF-8", "subject": "GBK", "text": "GBK", "html": "UTF-8"}',
        "attachments": b"1",
        "attachment-info": b'{"attachment1": {"filename": "photo.jpg", "type": "image/jpeg"}}',
    }


PHOTO = b"\xff\xd8\xff\xe0fake jpeg"


def sendgrid_request(message_id: str = "sg-1@client.example") -> tuple[bytes, dict[str, str]]:
    return form_body(sendgrid_fields(message_id), [("attachment1", "photo.jpg", "image/jpeg", PHOTO)]), SG_HEADERS


def mailgun_fields(token: str | None = None, timestamp: int | None = None, **extra: bytes) -> dict[str, bytes]:
    token = token or uuid.uuid4().hex + "abcdefghijklmnopqr"
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    return {
        "timestamp": stamp.encode(),
        "token": token.encode(),
        "signature": mailgun_signature(MAILGUN_KEY, stamp, token).encode(),
        "recipient": b"help+order-778@mg.shop.example.com",
        "sender": b"bounce@example.net",
        "from": b"Li Na <li.na@example.net>",
        "subject": b"Where is my order?",
        "body-plain": b"It has been two weeks.\n\nOn Mon, Nov 16, 2026 at 9:00 AM Shop wrote:\n> Shipped!",
        "stripped-text": b"It has been two weeks.",
        "Message-Id": b"<MG-42@Example.NET>",
        "message-headers": b'[["Date", "Sun, 22 Nov 2026 09:30:00 +0000"]]',
        **extra,
    }


def raw_message(*headers: str, body: bytes = b"Hello", content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = [
        "From: Wang Fang <wang.fang@example.org>",
        "To: service@shop.example.com",
        "Subject: =?UTF-8?Q?=E5=8F=91=E7=A5=A8?=",
        *headers,
        "MIME-Version: 1.0",
        f"Content-Type: {content_type}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def events(broker: EmbeddedKafka, at_least: int = 1) -> list[tuple[bytes, ContactEvent]]:
    records = await read_topic(broker.bootstrap, CONTACTS, at_least=at_least, timeout=2.0)
    return [(record.key, ContactEvent.model_validate_json(record.value)) for record in records]


# --- good posts ------------------------------------------------------------------------------------


async def test_a_sendgrid_post_is_on_the_broker_before_the_200(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    body, headers = sendgrid_request()
    async with serving(create_app(settings)) as client:
        response = await client.post("/webhooks/email/sg", content=body, headers=headers)
        assert response.status_code == 200, response.text
        ((key, event),) = await events(broker)
    assert key == b"email:sg:sg-1@client.example"
    assert str(event.event_id) == response.json()["event_id"]
    assert event.dedup_key == "sg-1@client.example"
    assert event.customer.platform_id == "zhang.wei@example.com"
    assert event.customer.display_name == "张伟"
    assert event.message.text == "我的空调不制冷了"
    assert event.metadata["subject"] == "空调坏了"
    (photo,) = event.message.attachments
    assert (photo.name, photo.content_type, photo.size) == ("photo.jpg", "image/jpeg", len(PHOTO))
    assert photo.sha256 == hashlib.sha256(PHOTO).hexdigest()


async def test_sendgrid_send_raw_and_retries_keep_one_event_id(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    mime = raw_message(
        "Message-ID: <raw-mode@x.example>",
        body=base64.encodebytes("退货".encode("gb18030")),
        content_type="text/plain; charset=gb18030\r\nContent-Transfer-Encoding: base64",
    )
    body = form_body({"email": mime, "envelope": b'{"to": ["support+case-9@shop.example.com"]}'})
    async with serving(create_app(settings)) as client:
        ids = set()
        for _ in range(2):
            response = await client.post("/webhooks/email/sg", content=body, headers=SG_HEADERS)
            assert response.status_code == 200, response.text
            ids.add(response.json()["event_id"])
    assert len(ids) == 1
    (key, event), _ = await events(broker, at_least=2)
    assert key == b"email:sg:case-9"
    assert event.message.text == "退货"


async def test_a_signed_mailgun_post_and_its_replay(broker: EmbeddedKafka, settings: ChannelsSettings) -> None:
    fields = mailgun_fields()
    body = form_body(fields, [("attachment-1", "收据.png", "image/png", b"\x89PNG fake")])
    async with serving(create_app(settings)) as client:
        response = await client.post("/webhooks/email/mg", content=body, headers={"content-type": FORM_TYPE})
        assert response.status_code == 200, response.text
        replay = await client.post("/webhooks/email/mg", content=body, headers={"content-type": FORM_TYPE})
        assert replay.status_code == 409, replay.text
        assert replay.json()["error"] == "replayed"
        # the urlencoded shape, with a fresh token
        encoded = httpx.QueryParams({k: v.decode() for k, v in mailgun_fields().items()})
        response = await client.post(
            "/webhooks/email/mg",
            content=str(encoded).encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, response.text
    (key, event), (key2, event2) = await events(broker, at_least=2)
    assert key == key2 == b"email:mg:order-778"
    assert event.event_id == event2.event_id  # the same Message-Id: one delivery
    assert event.customer.platform_id == "li.na@example.net"
    assert event.message.text == "It has been two weeks."
    assert event.message.attachments[0].name == "收据.png"
    assert event.dedup_key == "MG-42@example.net"


async def test_raw_posts_thread_replies_into_one_conversation(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    first = raw_message(
        "Message-ID: <Q1@Example.ORG>",
        body=b"Caf=C3=A9 machine broken",
        content_type="text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable",
    )
    reply = raw_message(
        "Message-ID: <Q2@example.org>",
        "In-Reply-To: <A1@shop.example.com>",
        "References: <Q1@example.org> <A1@shop.example.com>",
        body=b"<html><body><p>Still broken.</p><blockquote>old</blockquote></body></html>",
        content_type="text/html; charset=x-bogus-charset",
    )
    async with serving(create_app(settings)) as client:
        for raw in (first, reply):
            response = await client.post("/webhooks/email/raw", content=raw, headers=RAW_HEADERS)
            assert response.status_code == 200, response.text
    (key1, event1), (key2, event2) = await events(broker, at_least=2)
    assert key1 == key2 == b"email:raw:Q1@example.org"
    assert event1.message.text == "Café machine broken"
    assert event2.message.text == "Still broken."
    assert event1.metadata["subject"] == "发票"


# --- bad posts -----------------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    head, tail = b"", b""
    for level in range(depth):
        head += f"Content-Type: multipart/mixed; boundary=n{level}\r\n\r\n--n{level}\r\n".encode()
        tail = f"\r\n--n{level}--\r\n".encode() + tail
    return b"From: a@example.org\r\nMIME-Version: 1.0\r\n" + head + b"Content-Type: text/plain\r\n\r\nx" + tail


def _many_parts(count: int) -> bytes:
    parts = b"".join(b"--p\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" for _ in range(count))
    return raw_message(body=parts + b"--p--\r\n", content_type="multipart/mixed; boundary=p")


def _big_attachment() -> bytes:
    parts = (
        b"--p\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--p\r\nContent-Type: application/zip\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"\0" * 20_000) + b"--p--\r\n"
    )
    return raw_message(body=parts, content_type="multipart/mixed; boundary=p")


FORM = {"content-type": FORM_TYPE}


def _bad_requests() -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    sg_body, _ = sendgrid_request()
    good_raw = raw_message("Message-ID: <bad@x.org>")
    stale = form_body(mailgun_fields(timestamp=int(time.time()) - 600))
    unsigned = form_body({k: v for k, v in mailgun_fields().items() if k != "signature"})
    wrong = form_body({**mailgun_fields(), "signature": b"0" * 64})
    forged = form_body({**mailgun_fields(), "signature": mailgun_signature("another-key", "1", "x").encode()})
    sg, mg, raw = "/webhooks/email/sg", "/webhooks/email/mg", "/webhooks/email/raw"
    sg_wrong = {**SG_HEADERS, "authorization": basic("sendgrid", "guess")}
    raw_wrong = {**RAW_HEADERS, "authorization": "Bearer guess"}
    no_boundary = {**SG_HEADERS, "content-type": "multipart/form-data"}
    as_json = {**SG_HEADERS, "content-type": "application/json"}
    as_form = {**RAW_HEADERS, "content-type": FORM_TYPE}
    untyped = {"authorization": f"Bearer {RAW_TOKEN}"}
    return [
        ("unknown inbox", "/webhooks/email/nope", sg_body, SG_HEADERS, 404, "unknown_account"),
        ("sendgrid without credentials", sg, sg_body, FORM, 401, "unauthorized"),
        ("sendgrid wrong password", sg, sg_body, sg_wrong, 401, "unauthorized"),
        ("raw wrong bearer", raw, good_raw, raw_wrong, 401, "unauthorized"),
        ("mailgun missing signature", mg, unsigned, FORM, 401, "bad_signature"),
        ("mailgun wrong signature", mg, wrong, FORM, 401, "bad_signature"),
        ("mailgun other key", mg, forged, FORM, 401, "bad_signature"),
        ("mailgun stale timestamp", mg, stale, FORM, 401, "bad_signature"),
        ("multipart without boundary", sg, sg_body, no_boundary, 400, "malformed_body"),
        ("truncated multipart", sg, sg_body[:-40], SG_HEADERS, 400, "malformed_body"),
        ("mime nested too deep", raw, _nested(11), RAW_HEADERS, 400, "mime_too_complex"),
        ("mime bomb of parts", raw, _many_parts(500), RAW_HEADERS, 400, "mime_too_complex"),
        ("attachment over its limit", raw, _big_attachment(), RAW_HEADERS, 413, "attachment_too_large"),
        ("body over the limit", raw, raw_message(body=b"x" * 70_000), RAW_HEADERS, 413, "body_too_large"),
        ("json to sendgrid", sg, b"{}", as_json, 415, "unsupported_media_type"),
        ("form to raw", raw, good_raw, as_form, 415, "unsupported_media_type"),
        ("no content type", raw, good_raw, untyped, 415, "unsupported_media_type"),
        ("no sender", raw, b"Subject: hi\r\n\r\nbody", RAW_HEADERS, 422, "invalid_payload"),
    ]


# signed when the test runs, not when pytest collects it: a slow run would otherwise send stale timestamps
@pytest.mark.parametrize("name", [b[0] for b in _bad_requests()])
async def test_bad_input_is_refused_and_nothing_is_published(
    broker: EmbeddedKafka, settings: ChannelsSettings, name: str
) -> None:
    _, url, body, headers, status, code = next(b for b in _bad_requests() if b[0] == name)
    good, good_headers = sendgrid_request()
    async with serving(create_app(settings)) as client:
        await assert_refused_then_still_serving(
            client,
            (url, body, headers),
            status=status,
            code=code,
            good=("/webhooks/email/sg", good, good_headers),
            secrets=(SENDGRID_AUTH[1], MAILGUN_KEY, RAW_TOKEN),
        )
    assert len(await read_topic(broker.bootstrap, CONTACTS, timeout=0.5)) == 1, f"{name}: something was published"


async def test_a_stopped_broker_means_503_and_the_mailgun_token_stays_usable(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    app = create_app(settings.model_copy(update={"publish_timeout_seconds": 1.0}))
    async with serving(app) as client:
        broker.stop()
        body, headers = sendgrid_request()
        response = await client.post("/webhooks/email/sg", content=body, headers=headers)
        assert response.status_code == 503
        assert response.json()["error"] == "broker_unavailable"
        mailgun = form_body(mailgun_fields())
        for _ in range(2):  # the retry with the same token is not taken for a replay
            response = await client.post("/webhooks/email/mg", content=mailgun, headers=FORM)
            assert response.status_code == 503, response.text


async def test_the_schema_documents_the_endpoint(settings: ChannelsSettings) -> None:
    async with serving(create_app(settings)) as client:
        schema = (await client.get("/openapi.json")).json()
    responses = schema["paths"]["/webhooks/email/{inbox_id}"]["post"]["responses"]
    assert {"200", "400", "401", "404", "409", "413", "415", "503"} <= set(responses)


async def test_expired_replay_tokens_are_purged_while_the_service_runs(
    settings: ChannelsSettings, database_url: str
) -> None:
    scope = f"mailgun:purge-{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(database_url)
    try:
        assert await first_use(engine, scope=scope, token="expired", ttl=timedelta(seconds=-1))
        assert await first_use(engine, scope=scope, token="fresh", ttl=timedelta(hours=1))

        async def left_once_purged() -> set[str] | None:
            async with engine.connect() as conn:
                query = select(replay_tokens.c.token).where(replay_tokens.c.scope == scope)
                tokens = set((await conn.execute(query)).scalars())
            return None if "expired" in tokens else tokens

        assert await left_once_purged() is None  # nothing purges without the service
        async with serving(create_app(settings.model_copy(update={"replay_purge_interval_seconds": 0.1}))):
            assert await eventually(left_once_purged, timeout=30) == {"fresh"}
    finally:
        await engine.dispose()
