"""Fuzzing every webhook endpoint of the running channels service (a real PostgreSQL, Tansu, and a fake WeCom API
on loopback).

* Unsigned garbage on every path: never a 5xx, never a stack trace.
* Correctly signed hostile messages on every channel (web chat, e-mail, WeChat Official Account plain and safe
  mode, WeCom customer service, Douyin, phone): NUL, bidi controls, lone surrogates, huge Unicode, deep nesting,
  wrong types. Never a 5xx, and no lost contact: every message acknowledged with a 2xx is on the contacts topic.
"""

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import CONTACTS, ContactEvent
from kefu.config_file import load_section
from services.channels.accounts import ChannelsConfig
from services.channels.config import ChannelsSettings
from tests.integration import fuzz_support as fz
from tests.integration.support import read_topic
from tools.assemble import channels_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

GARBAGE_EXAMPLES = 120
EXAMPLES_PER_CHANNEL = 30
MIN_ACKNOWLEDGED_PER_CHANNEL = 8  # so that "nothing lost" is never vacuously true

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
def service(database_url: str, broker: EmbeddedKafka, tmp_path: Path) -> Iterator[fz.ChannelsUnderTest]:
    with fz.channels_service(database_url, broker.bootstrap, tmp_path) as service:
        yield service


# --- unsigned garbage -----------------------------------------------------------------------------


def _paths(config: Path) -> list[str]:
    """Every webhook path of the app, with configured account ids and a few unknown ones."""
    channels = load_section(config, "channels", ChannelsConfig)
    ids = {name: [a.id for a in getattr(channels, name)] for name in type(channels).model_fields}
    paths = []
    for path in create_app(ChannelsSettings(config_path=config)).openapi()["paths"]:
        if not path.startswith("/webhooks/"):
            continue
        channel = path.split("/")[2].replace("-", "_")
        for account in [*ids.get(channel, []), *ids.get("wecom_kf", [])[:1], "no-such-account", "%00", ".."]:
            paths.append(re.sub(r"\{[^}]+\}", account, path))
    return sorted(set(paths))


def _garbage() -> st.SearchStrategy[bytes]:
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
        json_values.map(lambda v: json.dumps(v).encode()),
        xml,
        st.just(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><a>&a;</a></xml>'),
        st.just(b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--xyz--\r\n'),
        st.dictionaries(st.sampled_from(["CallSid", "From", "To", "CallStatus", "token"]), text, max_size=5).map(
            lambda d: str(httpx.QueryParams(d)).encode()
        ),
    )


def test_no_input_makes_a_webhook_fail_with_a_5xx(service: fz.ChannelsUnderTest) -> None:
    paths = _paths(service.config)

    @fz.fuzz_settings(GARBAGE_EXAMPLES)
    @given(data=st.data())
    def call(data: Any) -> None:
        path = data.draw(st.sampled_from(paths))
        method = data.draw(st.sampled_from(["POST", "POST", "POST", "GET"]))
        headers = {"content-type": data.draw(st.sampled_from(MEDIA_TYPES))}
        for name in data.draw(st.lists(st.sampled_from(SIGNATURE_HEADERS), max_size=4, unique=True)):
            headers[name] = data.draw(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60))
        query = data.draw(
            st.dictionaries(
                st.sampled_from(["signature", "timestamp", "nonce", "echostr", "msg_signature", "encrypt_type"]),
                st.text(max_size=30),
                max_size=4,
            )
        )
        body = data.draw(_garbage())
        response = client.request(method, path, params=query, headers=headers, content=body)
        assert response.status_code < 500, (
            method,
            path,
            headers,
            body[:200],
            response.status_code,
            response.text[:300],
        )
        assert "Traceback" not in response.text

    with httpx.Client(base_url=service.url, timeout=10) as client:
        call()


# --- signed, hostile ------------------------------------------------------------------------------


def _marker(prefix: str = "fuzz-") -> str:
    return prefix + uuid.uuid4().hex


def _json(value: Any, *, ascii_only: bool, junk_depth: int) -> bytes:
    """``value`` as JSON; ``junk_depth`` > 0 adds a member nested that deep (written out: ``json`` would recurse)."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    if junk_depth and text.endswith("}"):
        text = f'{text[:-1]}, "junk": {"[" * junk_depth}{"]" * junk_depth}}}'
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: only a \\u escape carries it
        return _json(value, ascii_only=True, junk_depth=junk_depth)


@st.composite
def _spoil(draw: st.DrawFn, payload: dict[str, Any], *fields: tuple[str, ...]) -> dict[str, Any]:
    """``payload``, now and then with one of ``fields`` (a path of keys) holding a wrong type."""
    if fields and draw(st.integers(0, 3)) == 0:
        *parents, name = draw(st.sampled_from(fields))
        target = payload
        for key in parents:
            target = target[key]
        target[name] = draw(fz.wrong_type())
    return payload


@st.composite
def _webchat(draw: st.DrawFn) -> fz.Webhook:
    payload = {
        "conversation_id": draw(fz.hostile_id("c1", surrogates=True)),
        "visitor": {
            "id": draw(fz.hostile_id("visitor-1", surrogates=True)),
            "name": draw(fz.hostile_text(surrogates=True)),
        },
        "message": {"text": draw(fz.hostile_text(surrogates=True)), "sent_at": datetime.now(UTC).isoformat()},
        "page_url": draw(fz.hostile_text(surrogates=True)),
    }
    payload = draw(
        _spoil(payload, ("conversation_id",), ("visitor",), ("visitor", "name"), ("message", "text"), ("message",))
    )
    body = _json(payload, ascii_only=draw(st.booleans()), junk_depth=draw(st.sampled_from([0, 0, 40, 5000])))
    return fz.webchat(body, _marker("msg_"))


@st.composite
def _douyin(draw: st.DrawFn) -> fz.Webhook:
    content: dict[str, Any] = {
        "conversation_short_id": draw(fz.hostile_id("c1", surrogates=True)),
        "server_message_id": _marker(),
        "conversation_type": 1,
        "create_time": draw(st.integers(0, 2**41)),
        "message_type": "text",
        "text": draw(fz.hostile_text(surrogates=True)),
        "user_infos": [{"open_id": "_000fuzz", "nick_name": draw(fz.hostile_text(surrogates=True))}],
    }
    event = {
        "event": "im_receive_msg",
        "client_key": fz.DOUYIN.client_key,
        "from_user_id": draw(fz.hostile_id("_000fuzz")),
        "to_user_id": f"_000{fz.DOUYIN.id}",
        "content": content,
    }
    event = draw(
        _spoil(event, ("from_user_id",), ("content", "text"), ("content", "conversation_short_id"), ("content",))
    )
    if draw(st.booleans()):  # Douyin sends content as a JSON-encoded string as often as an object
        event["content"] = json.dumps(event["content"], ensure_ascii=draw(st.booleans()))
    body = _json(event, ascii_only=draw(st.booleans()), junk_depth=draw(st.sampled_from([0, 0, 40, 5000])))
    return fz.douyin(body, _marker())


def _in_xml(text: str, cdata: bool) -> str:
    return f"<![CDATA[{text}]]>" if cdata and "]]>" not in text else escape(text)


@st.composite
def _wechat(draw: st.DrawFn) -> fz.Webhook:
    marker = str(uuid.uuid4().int % 10**18)
    cdata = draw(st.booleans())
    openid = draw(fz.hostile_id("oFuzz-1"))
    xml = (
        f"<xml><ToUserName><![CDATA[{fz.OFFICIAL_ACCOUNT.appid}]]></ToUserName>"
        f"<FromUserName>{_in_xml(openid, cdata)}</FromUserName><CreateTime>{int(datetime.now(UTC).timestamp())}"
        f"</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>{_in_xml(draw(fz.hostile_text()), cdata)}"
        f"</Content><MsgId>{marker}</MsgId>{draw(st.sampled_from(['', '<a>' * 3000 + '</a>' * 3000]))}</xml>"
    )
    return fz.wechat(xml, marker, safe=draw(st.booleans()))


@st.composite
def _email(draw: st.DrawFn) -> fz.Webhook:
    marker = _marker()
    name, subject, text = draw(fz.hostile_text()), draw(fz.hostile_text()), draw(fz.hostile_text())
    nesting = draw(st.sampled_from([0, 0, 3, 200]))
    # Message-ID first: a CR LF in a hostile header may end the header block early (that is allowed to happen)
    head = (
        f"Message-ID: <{marker}@fuzz.example>\r\nDate: {formatdate()}\r\nTo: {fz.RAW_INBOX.address}\r\n"
        f"From: {name} <customer-{uuid.uuid4().hex[:8]}@example.org>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
    )
    part = f"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
    for level in range(nesting):
        part = f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n{part}--b{level}--\r\n'
    return fz.raw_email((head + part).encode(), marker)


@st.composite
def _phone(draw: st.DrawFn) -> fz.Webhook:
    sid = "CA" + uuid.uuid4().hex
    form = [
        ("AccountSid", "AC" + "0" * 32),
        ("CallSid", sid),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", draw(st.sampled_from(["+8613800138000", "+86 138 0013 8000", "anonymous", "\x00", "\u202e+86"]))),
        ("To", fz.LINE_NUMBER),
        ("CallerName", draw(fz.hostile_text())),
        ("FromCity", draw(fz.hostile_text())),
    ]
    form += draw(st.lists(st.tuples(fz.hostile_text(max_size=10), fz.hostile_text()), max_size=3))
    return fz.phone(form, sid)


def _kf_message(msgid: str, text: str, send_time: int | None = None) -> dict[str, Any]:
    return {
        "msgid": msgid,
        "open_kfid": "wkFuzz",
        "external_userid": "wmFuzz",
        "send_time": int(datetime.now(UTC).timestamp()) if send_time is None else send_time,
        "origin": 3,
        "msgtype": "text",
        "text": {"content": text},
    }


@st.composite
def _wecom_page(draw: st.DrawFn) -> tuple[list[Any], list[str]]:
    """A ``msg_list`` of well-formed customer messages with hostile text (which must all be published) and
    malformed entries (which are skipped)."""
    markers = [_marker() for _ in range(draw(st.integers(1, 3)))]
    # no lone surrogates: the fake WeCom API answers through Starlette, which writes JSON as UTF-8
    messages: list[Any] = [_kf_message(marker, draw(fz.hostile_text())) for marker in markers]
    for _ in range(draw(st.integers(0, 2))):
        broken = _kf_message(_marker(), "x")
        broken[draw(st.sampled_from(sorted(broken)))] = draw(fz.wrong_type())
        messages.insert(draw(st.integers(0, len(messages))), broken)
    return messages, markers


CHANNELS = ("webchat", "douyin", "wechat", "email", "phone", "wecom-kf")
STRATEGIES = {"webchat": _webchat(), "douyin": _douyin(), "wechat": _wechat(), "email": _email(), "phone": _phone()}


async def test_signed_hostile_messages_get_no_5xx_and_every_acknowledged_one_is_published(
    service: fz.ChannelsUnderTest, broker: EmbeddedKafka
) -> None:
    acknowledged: Counter[str] = Counter()
    markers: dict[str, tuple[str, bytes]] = {}  # marker -> channel and body, to say what was lost
    cursor = [""]  # the WeCom cursor the service holds: the next doorbell's page is scripted under it

    def call(channel: str, data: Any) -> None:
        due: list[str]
        messages: list[Any] = []
        following = f"FUZZ-{uuid.uuid4().hex}"
        if channel == "wecom-kf":
            messages, due = data.draw(_wecom_page())
            service.wecom.pages[cursor[0]] = {
                "errcode": 0,
                "next_cursor": following,
                "has_more": 0,
                "msg_list": messages,
            }
            webhook = fz.wecom_kf(fz.doorbell("fuzz-token", "wkFuzz"))
        else:
            webhook = data.draw(STRATEGIES[channel])
            due = [webhook.marker] if webhook.marker else []
        response = webhook.send(client)
        assert response.status_code < 500, (channel, webhook.body[:300], response.status_code, response.text[:300])
        assert "Traceback" not in response.text
        if response.is_success:
            acknowledged[channel] += 1
            shown = json.dumps(messages, ensure_ascii=False).encode() if channel == "wecom-kf" else webhook.body
            markers.update((marker, (channel, shown[:300])) for marker in due)
            if channel == "wecom-kf":
                cursor[0] = following

    with httpx.Client(base_url=service.url, timeout=30) as client:
        for channel in CHANNELS:  # one run per channel, so that each gets as many examples
            fz.fuzz_settings(EXAMPLES_PER_CHANNEL)(given(channel=st.just(channel), data=st.data())(call))()
    records = await read_topic(broker.bootstrap, CONTACTS, at_least=len(markers), timeout=20)
    published = [ContactEvent.model_validate_json(record.value).dedup_key for record in records]
    lost = {marker: markers[marker] for marker in fz.lost(markers, published)}
    assert not lost, f"acknowledged but not published: {lost}"
    # and what is published, PostgreSQL can store: no NUL, no lone surrogate reaches the topic
    unstorable = [record.value[:200] for record in records if not fz.storable(json.loads(record.value))]
    assert not unstorable, unstorable
    assert all(acknowledged[channel] >= MIN_ACKNOWLEDGED_PER_CHANNEL for channel in CHANNELS), acknowledged


def _oa_text(marker: str, created: str, text: str = "你好") -> str:
    return (
        f"<xml><ToUserName><![CDATA[{fz.OFFICIAL_ACCOUNT.appid}]]></ToUserName><FromUserName>oFuzz-1</FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType>text</MsgType><Content>{text}</Content><MsgId>{marker}</MsgId></xml>"
    )


async def test_a_platform_time_no_datetime_can_hold_is_refused_or_replaced_never_a_5xx(
    service: fz.ChannelsUnderTest, broker: EmbeddedKafka
) -> None:
    """Found by the signed fuzz: a pulled WeCom message with ``send_time`` 3.47e16 made the doorbell a 500 (and
    lost the page); so did an Official Account ``CreateTime`` of twelve digits (year 33658)."""
    marker = _marker()
    service.wecom.pages[""] = {
        "errcode": 0,
        "next_cursor": "after-overflow",
        "has_more": 0,
        "msg_list": [_kf_message(marker, "时间戳坏了", send_time=10**17)],
    }
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
        doorbell = await client.request(**fz.wecom_kf(fz.doorbell("fuzz-token", "wkFuzz")).request())
        official = await client.request(**fz.wechat(_oa_text("1", "999999999999"), "1", safe=False).request())
    assert doorbell.status_code == 200, doorbell.text
    assert official.status_code == 422, official.text
    (record,) = await read_topic(broker.bootstrap, CONTACTS, at_least=1, timeout=5)
    event = ContactEvent.model_validate_json(record.value)
    assert event.dedup_key == marker
    assert event.occurred_at == event.received_at  # the time the platform gave is no time: kefu's own stands in
