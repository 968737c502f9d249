"""WeChat Official Account callbacks and WeCom customer service doorbells against a real broker, a
real PostgreSQL (pull cursors) and a fake WeCom API served over HTTP on loopback: ``success`` only
once the messages are on the broker; every bad input a clear 4xx with nothing published; 503 when
the broker or the WeCom API is down."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import CONTACTS, ContactEvent
from services.channels.common.store import load_cursor
from services.channels.config import ChannelsSettings
from services.channels.wechat.crypto import WechatCrypto, sha1_signature
from tests.fakes.wecom import FakeWecom
from tests.integration.support import free_port, read_topic, server_in_thread, serving
from tools.assemble import channels_app as create_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration

# the WeCom WXBizMsgCrypt test vector (document 90968): token, EncodingAESKey, receive id
VECTOR_TOKEN = "QDG6eK"
VECTOR_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
VECTOR_ID = "wx5823bf96d3bd56c7"
VECTOR_ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="

PLAIN_TOKEN = "AAAAA"
KF_SECRET = "fake-kf-secret-0123456789"
OPEN_KFID = "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q"
CUSTOMER = "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"

OA_URL = "/webhooks/wechat/oa"
SAFE_URL = "/webhooks/wechat/oa-safe"
KF_URL = "/webhooks/wecom-kf/kf"
XML = {"content-type": "text/xml"}

SAFE = WechatCrypto(VECTOR_TOKEN, VECTOR_AES_KEY, VECTOR_ID)


# --- a fake WeCom API, a real HTTP server on loopback -------------------------------------------


@pytest.fixture
def wecom() -> Iterator[FakeWecom]:
    fake = FakeWecom(corp_id=VECTOR_ID, secret=KF_SECRET, port=free_port())
    with server_in_thread(fake.app(), fake.port, name="fake-wecom"):
        yield fake


def kf_message(msgid: str, text: str, *, origin: int = 3, msgtype: str = "text") -> dict[str, Any]:
    message: dict[str, Any] = {
        "msgid": msgid,
        "open_kfid": OPEN_KFID,
        "external_userid": CUSTOMER,
        "send_time": int(time.time()),
        "origin": origin,
        "msgtype": msgtype,
    }
    if msgtype == "text":
        message["text"] = {"content": text}
    elif msgtype == "image":
        message["image"] = {"media_id": text}
    return message


PAGES: dict[str, dict[str, Any]] = {
    "": {
        "errcode": 0,
        "errmsg": "ok",
        "next_cursor": "CURSOR-1",
        "has_more": 1,
        "msg_list": [
            kf_message("msg-1", "你好，我的订单还没到"),
            kf_message("msg-servicer", "您好，请稍等", origin=5),
            {
                "msgid": "evt-1",
                "send_time": 1,
                "origin": 4,
                "msgtype": "event",
                "event": {"event_type": "enter_session", "open_kfid": OPEN_KFID, "external_userid": CUSTOMER},
            },
        ],
    },
    "CURSOR-1": {
        "errcode": 0,
        "next_cursor": "CURSOR-2",
        "has_more": 0,
        "msg_list": [kf_message("msg-2", "MEDIA-ID-1", msgtype="image")],
    },
    "CURSOR-2": {"errcode": 0, "next_cursor": "CURSOR-3", "has_more": 0, "msg_list": [kf_message("msg-3", "在吗？")]},
}


# --- configuration and the app ------------------------------------------------------------------


@pytest.fixture
def settings(database_url: str, broker: EmbeddedKafka, wecom: FakeWecom, tmp_path: Path) -> ChannelsSettings:
    path = tmp_path / "kefu.yaml"
    path.write_text(
        f"""
channels:
  wechat:
    - {{id: oa, name: Plain OA, appid: wx0000000000000001, token: {PLAIN_TOKEN}}}
    - id: oa-safe
      name: Safe-mode OA
      appid: {VECTOR_ID}
      token: {VECTOR_TOKEN}
      encoding_aes_key: {VECTOR_AES_KEY}
      require_encryption: true
      contact_menu_keys: [CONTACT_AGENT]
  wecom_kf:
    - id: kf
      name: WeCom customer service
      corp_id: {VECTOR_ID}
      secret: {KF_SECRET}
      token: {VECTOR_TOKEN}
      encoding_aes_key: {VECTOR_AES_KEY}
      api_base: {wecom.api_base}
routing:
  default_queue: q
  queues: [{{id: q, name: Q, channels: [webchat, email, wechat, douyin, phone]}}]
""",
        encoding="utf-8",
    )
    return ChannelsSettings(database_url=database_url, kafka_bootstrap=broker.bootstrap, config_path=path)


# --- signed requests ----------------------------------------------------------------------------


def now() -> str:
    return str(int(time.time()))


def oa_text(openid: str = "oUser-1", text: str = "你好", msg_id: str | None = None) -> str:
    msg_id = msg_id or str(uuid.uuid4().int % 10**18)
    return (
        f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{now()}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


def oa_params(token: str = PLAIN_TOKEN, *, timestamp: str | None = None, nonce: str = "1514711492") -> dict[str, str]:
    timestamp = timestamp or now()
    return {
        "signature": sha1_signature(token, timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "openid": "oUser-1",
    }


def safe_request(
    inner: str, *, crypto: WechatCrypto = SAFE, timestamp: str | None = None, encrypted: str | None = None
) -> tuple[dict[str, str], str]:
    """Query and body of a safe-mode (encrypted) Official Account callback."""
    params = oa_params(VECTOR_TOKEN, timestamp=timestamp)
    encrypted = encrypted if encrypted is not None else crypto.encrypt(inner)
    params |= {"encrypt_type": "aes", "msg_signature": SAFE.sign(params["timestamp"], params["nonce"], encrypted)}
    return params, f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"


DOORBELL_TOKEN = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR"


def doorbell(token: str = DOORBELL_TOKEN) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{VECTOR_ID}]]></ToUserName><CreateTime>{now()}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>"
        f"<Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[{OPEN_KFID}]]></OpenKfId></xml>"
    )


def kf_request(
    inner: str | None = None, *, crypto: WechatCrypto = SAFE, timestamp: str | None = None, encrypted: str | None = None
) -> tuple[dict[str, str], str]:
    """Query and body of a WeCom callback."""
    timestamp = timestamp or now()
    encrypted = encrypted if encrypted is not None else crypto.encrypt(inner or doorbell())
    params = {
        "msg_signature": SAFE.sign(timestamp, "1372623149", encrypted),
        "timestamp": timestamp,
        "nonce": "1372623149",
    }
    return (
        params,
        f"<xml><ToUserName><![CDATA[{VECTOR_ID}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>",
    )


async def contacts(broker: EmbeddedKafka, at_least: int = 0) -> list[tuple[bytes, ContactEvent]]:
    records = await read_topic(broker.bootstrap, CONTACTS, at_least=at_least, timeout=1.0 if at_least else 0.5)
    return [(record.key, ContactEvent.model_validate_json(record.value)) for record in records]


async def saved_cursor(database_url: str) -> str | None:
    engine = create_async_engine(database_url)
    try:
        return await load_cursor(engine, f"wecom-kf:kf:{OPEN_KFID}")
    finally:
        await engine.dispose()


# --- Official Accounts --------------------------------------------------------------------------


async def test_oa_url_check_answers_echostr(settings: ChannelsSettings) -> None:
    async with serving(create_app(settings)) as client:
        response = await client.get(OA_URL, params=oa_params() | {"echostr": "7260212352461497616"})
        assert response.status_code == 200, response.text
        assert response.text == "7260212352461497616"
        assert response.headers["content-type"].startswith("text/plain")
        wrong = await client.get(OA_URL, params=oa_params("BBBBB") | {"echostr": "7260212352461497616"})
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "bad_signature"


async def test_oa_safe_mode_url_check_verifies_msg_signature(settings: ChannelsSettings) -> None:
    async with serving(create_app(settings)) as client:
        params = oa_params(VECTOR_TOKEN) | {"echostr": "abc", "encrypt_type": "aes"}
        good = params | {"msg_signature": sha1_signature(VECTOR_TOKEN, params["timestamp"], params["nonce"], "abc")}
        response = await client.get(SAFE_URL, params=good)
        assert (response.status_code, response.text) == (200, "abc")
        response = await client.get(SAFE_URL, params=params | {"msg_signature": "0" * 40})
        assert response.status_code == 401


async def test_oa_plain_text_is_on_the_broker_before_success(broker: EmbeddedKafka, settings: ChannelsSettings) -> None:
    async with serving(create_app(settings)) as client:
        body = oa_text("oUser-1", "空调不制冷", msg_id="6054768590064713728")
        response = await client.post(OA_URL, params=oa_params(), content=body.encode(), headers=XML)
        assert (response.status_code, response.text) == (200, "success")
        ((key, event),) = await contacts(broker, 1)
    assert key == b"wechat:oa:oUser-1"
    assert event.customer.platform_id == "oUser-1"
    assert event.dedup_key == "6054768590064713728"
    assert event.message.text == "空调不制冷"
    assert event.account_id == "oa"


async def test_oa_safe_mode_message_is_decrypted(broker: EmbeddedKafka, settings: ChannelsSettings) -> None:
    async with serving(create_app(settings)) as client:
        params, body = safe_request(oa_text("oUser-2", "加密消息", msg_id="42"))
        response = await client.post(
            SAFE_URL, params=params, content=body.encode(), headers={"content-type": "application/xml"}
        )
        assert (response.status_code, response.text) == (200, "success")
        ((key, event),) = await contacts(broker, 1)
    assert key == b"wechat:oa-safe:oUser-2"
    assert (event.dedup_key, event.message.text) == ("42", "加密消息")


async def test_oa_events_only_a_contact_menu_click_is_published(
    broker: EmbeddedKafka, settings: ChannelsSettings
) -> None:
    def event_xml(event: str, key: str = "") -> str:
        return (
            f"<xml><ToUserName>gh_test</ToUserName><FromUserName>oUser-3</FromUserName><CreateTime>{now()}</CreateTime>"
            f"<MsgType>event</MsgType><Event>{event}</Event><EventKey>{key}</EventKey></xml>"
        )

    async with serving(create_app(settings)) as client:
        for xml in (event_xml("subscribe"), event_xml("VIEW", "https://x"), event_xml("CLICK", "CONTACT_AGENT")):
            params, body = safe_request(xml)
            response = await client.post(SAFE_URL, params=params, content=body.encode(), headers=XML)
            assert (response.status_code, response.text) == (200, "success")
    ((key, event),) = await contacts(broker, 1)
    assert key == b"wechat:oa-safe:oUser-3"
    assert event.metadata["event_key"] == "CONTACT_AGENT"


async def test_oa_retries_of_one_message_carry_one_event_id(broker: EmbeddedKafka, settings: ChannelsSettings) -> None:
    body = oa_text(msg_id="777").encode()
    async with serving(create_app(settings)) as client:
        for _ in range(2):
            response = await client.post(OA_URL, params=oa_params(), content=body, headers=XML)
            assert response.text == "success"
    events = await contacts(broker, 2)
    assert len({event.event_id for _, event in events}) == 1


# --- bad input: refused, nothing published, and the service keeps serving ----------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<xml><FromUserName>oUser</FromUserName><MsgType>text</MsgType><Content>&lol3;</Content></xml>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><FromUserName>oUser</FromUserName><MsgType>text</MsgType><Content>&xxe;</Content></xml>"
)
OTHER_APP = WechatCrypto(VECTOR_TOKEN, VECTOR_AES_KEY, "wx0000000000000002")


@dataclass
class Bad:
    name: str
    url: str
    params: dict[str, str]
    body: bytes
    status: int
    code: str
    content_type: str = "text/xml"


def _bad_requests() -> list[Bad]:
    good = oa_text().encode()
    stale = str(int(time.time()) - 600)
    future = str(int(time.time()) + 600)
    safe_params, safe_body = safe_request(oa_text())
    garbled_params, garbled_body = safe_request("", encrypted="Z2FyYmxlZA==")
    truncated = SAFE.encrypt(oa_text())[:-24]
    truncated_params, truncated_body = safe_request("", encrypted=truncated)
    other_app_params, other_app_body = safe_request(oa_text(), crypto=OTHER_APP)
    kf_params, kf_body = kf_request()
    kf_garbled_params, kf_garbled_body = kf_request(encrypted="bm90IGFlcyBhdCBhbGwgLSBqdXN0IGdhcmJhZ2UhISE=")
    kf_other_params, kf_other_body = kf_request(crypto=OTHER_APP)
    kf_stale_params, kf_stale_body = kf_request(timestamp=stale)
    return [
        Bad("oa unknown account", "/webhooks/wechat/nope", oa_params(), good, 404, "unknown_account"),
        Bad("oa wrong signature", OA_URL, oa_params("BBBBB"), good, 401, "bad_signature"),
        Bad("oa no signature", OA_URL, {"timestamp": now(), "nonce": "1"}, good, 401, "bad_signature"),
        Bad("oa stale timestamp", OA_URL, oa_params(timestamp=stale), good, 401, "bad_signature"),
        Bad("oa future timestamp", OA_URL, oa_params(timestamp=future), good, 401, "bad_signature"),
        Bad("oa malformed xml", OA_URL, oa_params(), b"<xml><Content>hi</xml>", 400, "malformed_body"),
        Bad("oa xxe", OA_URL, oa_params(), XXE.encode(), 400, "malformed_body"),
        Bad("oa billion laughs", OA_URL, oa_params(), BILLION_LAUGHS.encode(), 400, "malformed_body"),
        Bad("oa not a message", OA_URL, oa_params(), b"<xml><Content>hi</Content></xml>", 422, "invalid_payload"),
        Bad("oa invalid utf-8", OA_URL, oa_params(), b"<xml><Content>\xff\xfe</Content></xml>", 400, "malformed_body"),
        Bad("oa too large", OA_URL, oa_params(), b"<xml>" + b" " * 300_000 + b"</xml>", 413, "body_too_large"),
        Bad("oa json", OA_URL, oa_params(), b'{"Content": "hi"}', 415, "unsupported", "application/json"),
        Bad("oa plain to safe-only", SAFE_URL, oa_params(VECTOR_TOKEN), good, 401, "bad_signature"),
        Bad(
            "oa wrong msg_signature",
            SAFE_URL,
            safe_params | {"msg_signature": "0" * 40},
            safe_body.encode(),
            401,
            "bad_signature",
        ),
        Bad("oa garbled aes", SAFE_URL, garbled_params, garbled_body.encode(), 400, "malformed_body"),
        Bad("oa truncated aes", SAFE_URL, truncated_params, truncated_body.encode(), 400, "malformed_body"),
        Bad("oa wrong appid", SAFE_URL, other_app_params, other_app_body.encode(), 401, "bad_signature"),
        Bad("kf unknown account", "/webhooks/wecom-kf/nope", kf_params, kf_body.encode(), 404, "unknown_account"),
        Bad("kf wrong msg_signature", KF_URL, kf_params | {"nonce": "2"}, kf_body.encode(), 401, "bad_signature"),
        Bad("kf stale timestamp", KF_URL, kf_stale_params, kf_stale_body.encode(), 401, "bad_signature"),
        Bad("kf garbled aes", KF_URL, kf_garbled_params, kf_garbled_body.encode(), 400, "malformed_body"),
        Bad("kf wrong corp id", KF_URL, kf_other_params, kf_other_body.encode(), 401, "bad_signature"),
        Bad("kf xxe", KF_URL, kf_params, XXE.encode(), 400, "malformed_body"),
        Bad("kf malformed xml", KF_URL, kf_params, b"<xml><Encrypt>", 400, "malformed_body"),
        Bad("kf no encrypt", KF_URL, kf_params, b"<xml><ToUserName>x</ToUserName></xml>", 422, "invalid_payload"),
        Bad("kf invalid utf-8", KF_URL, kf_params, b"<xml>\xc3\x28</xml>", 400, "malformed_body"),
        Bad("kf too large", KF_URL, kf_params, b"<xml>" + b" " * 300_000 + b"</xml>", 413, "body_too_large"),
        Bad("kf form", KF_URL, kf_params, kf_body.encode(), 415, "unsupported", "application/x-www-form-urlencoded"),
    ]


# signed when the test runs, not when pytest collects it: a slow run would otherwise send stale timestamps
@pytest.mark.parametrize("name", [bad.name for bad in _bad_requests()], ids=lambda name: name.replace(" ", "-"))
async def test_bad_input_is_refused_and_nothing_is_published(
    broker: EmbeddedKafka, wecom: FakeWecom, settings: ChannelsSettings, name: str
) -> None:
    bad = next(bad for bad in _bad_requests() if bad.name == name)
    async with serving(create_app(settings)) as client:
        response = await client.post(
            bad.url, params=bad.params, content=bad.body, headers={"content-type": bad.content_type}
        )
        assert response.status_code == bad.status, response.text
        error = response.json()
        assert error["error"].startswith(bad.code)
        assert error["detail"]
        assert "Traceback" not in response.text
        assert VECTOR_AES_KEY not in response.text and KF_SECRET not in response.text
        assert await contacts(broker) == [], f"{bad.name}: something was published"
        assert wecom.sync_bodies == [], f"{bad.name}: WeCom was asked for messages"
        # the service keeps serving
        ok = await client.post(OA_URL, params=oa_params(), content=oa_text().encode(), headers=XML)
        assert (ok.status_code, ok.text) == (200, "success")
    assert len(await contacts(broker, 1)) == 1


# --- WeCom customer service ---------------------------------------------------------------------


async def test_kf_url_check_answers_the_decrypted_echostr(settings: ChannelsSettings) -> None:
    timestamp = now()
    params = {
        "msg_signature": SAFE.sign(timestamp, "263014780", VECTOR_ECHOSTR),
        "timestamp": timestamp,
        "nonce": "263014780",
        "echostr": VECTOR_ECHOSTR,
    }
    async with serving(create_app(settings)) as client:
        response = await client.get(KF_URL, params=params)
        assert (response.status_code, response.text) == (200, "1616140317555161061")
        # a '+' that arrives as a space (not percent-encoded) still verifies
        raw = "&".join(f"{k}={v}" for k, v in params.items())
        response = await client.get(f"{KF_URL}?{raw}")
        assert (response.status_code, response.text) == (200, "1616140317555161061")
        response = await client.get(KF_URL, params=params | {"nonce": "1"})
        assert response.status_code == 401


async def test_kf_doorbells_pull_publish_and_persist_the_cursor(
    broker: EmbeddedKafka, wecom: FakeWecom, settings: ChannelsSettings, database_url: str
) -> None:
    wecom.pages = PAGES
    async with serving(create_app(settings)) as client:
        params, body = kf_request()
        response = await client.post(KF_URL, params=params, content=body.encode(), headers=XML)
        assert (response.status_code, response.text) == (200, "success")
        first = await contacts(broker, 2)
        assert [event.dedup_key for _, event in first] == ["msg-1", "msg-2"]  # not the servicer's, not the event
        assert await saved_cursor(database_url) == "CURSOR-2"
        assert [b["cursor"] for b in wecom.sync_bodies] == ["", "CURSOR-1"]
        assert wecom.sync_bodies[0] == {
            "cursor": "",
            "token": DOORBELL_TOKEN,
            "limit": 1000,
            "open_kfid": OPEN_KFID,
        }

    # a restarted service continues from the saved cursor
    async with serving(create_app(settings)) as client:
        params, body = kf_request(doorbell("SECOND-TOKEN"))
        response = await client.post(KF_URL, params=params, content=body.encode(), headers=XML)
        assert (response.status_code, response.text) == (200, "success")
    assert [(b["cursor"], b["token"]) for b in wecom.sync_bodies[2:]] == [("CURSOR-2", "SECOND-TOKEN")]
    assert await saved_cursor(database_url) == "CURSOR-3"
    events = await contacts(broker, 3)
    key, third = events[2]
    assert key == f"wechat:kf:{OPEN_KFID}:{CUSTOMER}".encode()
    assert all(k == key for k, _ in events)
    assert (third.dedup_key, third.message.text, third.customer.platform_id) == ("msg-3", "在吗？", CUSTOMER)
    image = events[1][1]
    assert image.message.attachments[0].content_type == "image/jpeg"
    assert image.metadata["media_id"] == "MEDIA-ID-1"


async def test_kf_access_token_is_cached_and_renewed_when_rejected(
    broker: EmbeddedKafka, wecom: FakeWecom, settings: ChannelsSettings
) -> None:
    wecom.pages = PAGES
    async with serving(create_app(settings)) as client:
        for _ in range(2):
            params, body = kf_request()
            assert (await client.post(KF_URL, params=params, content=body.encode(), headers=XML)).text == "success"
        assert wecom.tokens_issued == 1  # cached across doorbells
        wecom.failures = [{"errcode": 42001, "errmsg": "access_token expired"}]
        params, body = kf_request()
        assert (await client.post(KF_URL, params=params, content=body.encode(), headers=XML)).text == "success"
        assert wecom.tokens_issued == 2
    assert [b["cursor"] for b in wecom.sync_bodies] == ["", "CURSOR-1", "CURSOR-2", "CURSOR-3", "CURSOR-3"]
    assert [event.dedup_key for _, event in await contacts(broker, 3)] == ["msg-1", "msg-2", "msg-3"]


@pytest.mark.parametrize(
    "failure",
    [{"errcode": 45009, "errmsg": "api freq out of limit"}, 500, {"errcode": 95000, "errmsg": "invalid token"}],
    ids=["errcode", "http-500", "bad-doorbell-token"],
)
async def test_kf_wecom_api_failure_is_503_and_retried(
    broker: EmbeddedKafka,
    wecom: FakeWecom,
    settings: ChannelsSettings,
    database_url: str,
    failure: dict[str, Any] | int,
) -> None:
    wecom.pages = PAGES
    wecom.failures = [PAGES[""], failure]  # the first page comes, the second fails
    async with serving(create_app(settings)) as client:
        params, body = kf_request()
        response = await client.post(KF_URL, params=params, content=body.encode(), headers=XML)
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "platform_unavailable"
        assert "ACCESS-" not in response.text and KF_SECRET not in response.text
        assert await saved_cursor(database_url) == "CURSOR-1"  # what was published is not pulled again
        # WeCom retries the doorbell
        response = await client.post(KF_URL, params=params, content=body.encode(), headers=XML)
        assert (response.status_code, response.text) == (200, "success")
    assert [event.dedup_key for _, event in await contacts(broker, 2)] == ["msg-1", "msg-2"]
    assert await saved_cursor(database_url) == "CURSOR-2"


async def test_kf_unreachable_wecom_api_is_503(broker: EmbeddedKafka, settings: ChannelsSettings) -> None:
    text = settings.config_path.read_text(encoding="utf-8")
    dead = f"      api_base: http://127.0.0.1:{free_port()}"
    lines = [dead if line.strip().startswith("api_base:") else line for line in text.splitlines()]
    settings.config_path.write_text("\n".join(lines), encoding="utf-8")
    async with serving(create_app(settings)) as client:
        params, body = kf_request()
        response = await client.post(KF_URL, params=params, content=body.encode(), headers=XML)
        assert response.status_code == 503
        assert response.json() == {"error": "platform_unavailable", "detail": "WeCom gettoken failed: ConnectError"}
    assert await contacts(broker) == []


async def test_kf_other_events_are_acknowledged_without_a_pull(
    broker: EmbeddedKafka, wecom: FakeWecom, settings: ChannelsSettings
) -> None:
    other = (
        f"<xml><ToUserName>{VECTOR_ID}</ToUserName><CreateTime>{now()}</CreateTime><MsgType>event</MsgType>"
        "<Event>change_contact</Event></xml>"
    )
    async with serving(create_app(settings)) as client:
        params, body = kf_request(other)
        response = await client.post(KF_URL, params=params, content=body.encode(), headers=XML)
        assert (response.status_code, response.text) == (200, "success")
    assert wecom.sync_bodies == []
    assert await contacts(broker) == []


# --- the broker gone ----------------------------------------------------------------------------


async def test_a_vanished_broker_gets_503_and_never_success(
    broker: EmbeddedKafka, wecom: FakeWecom, settings: ChannelsSettings, database_url: str
) -> None:
    wecom.pages = PAGES
    app = create_app(settings.model_copy(update={"publish_timeout_seconds": 1.0}))
    async with serving(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        broker.stop()
        response = await client.post(OA_URL, params=oa_params(), content=oa_text().encode(), headers=XML)
        assert response.status_code == 503
        assert response.json()["error"] == "broker_unavailable"
        params, body = kf_request()
        response = await client.post(KF_URL, params=params, content=body.encode(), headers=XML)
        assert response.status_code == 503
        assert response.json()["error"] == "broker_unavailable"
    assert await saved_cursor(database_url) is None  # nothing published, so the cursor did not move


async def test_concurrent_doorbells_pull_one_at_a_time(
    broker: EmbeddedKafka, wecom: FakeWecom, settings: ChannelsSettings
) -> None:
    wecom.pages = PAGES
    async with serving(create_app(settings)) as client:

        async def ring() -> httpx.Response:
            params, body = kf_request()
            return await client.post(KF_URL, params=params, content=body.encode(), headers=XML)

        responses = await asyncio.gather(*(ring() for _ in range(3)))
        assert [r.text for r in responses] == ["success"] * 3
    # serialized: each pull starts where the previous one left the cursor
    assert [b["cursor"] for b in wecom.sync_bodies] == ["", "CURSOR-1", "CURSOR-2", "CURSOR-3"]
    assert [event.dedup_key for _, event in await contacts(broker, 3)] == ["msg-1", "msg-2", "msg-3"]
