"""WeChat Official Account and WeCom customer service: signatures and WXBizMsgCrypt with the
platforms' published known-answer vectors, the callback XML, normalization, and the WeCom API client."""

import base64
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import Channel
from services.channels.common.ids import event_id
from services.channels.exceptions import BadSignature, InvalidPayload, MalformedBody, PlatformUnavailable
from services.channels.wechat.accounts import WechatAccount, WecomKfAccount, aes_key
from services.channels.wechat.crypto import WechatCrypto, check_timestamp, sha1_signature, signature_matches
from services.channels.wechat.kf_api import WecomKfApi
from services.channels.wechat.kf_messages import KfMessage, kf_contact_event
from services.channels.wechat.official_messages import official_account_event
from services.channels.wechat.xml import parse_xml
from tests.fakes.wecom import TOKEN_EXPIRED, FakeWecom

# --- the platforms' known-answer vectors -------------------------------------------------------

# WeChat Official Account server URL check (developers.weixin.qq.com, 接入概述)
OA_TOKEN, OA_TIMESTAMP, OA_NONCE = "AAAAA", "1714036504", "1514711492"
OA_SIGNATURE = "f464b24fc39322e44b38aa78f5edd27bd1441696"

# WeCom WXBizMsgCrypt (document 90968 and its sample code)
WECOM_TOKEN = "QDG6eK"
WECOM_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
WECOM_RECEIVE_ID = "wx5823bf96d3bd56c7"
URL_TIMESTAMP, URL_NONCE = "1409659589", "263014780"
URL_ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
URL_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
URL_PLAINTEXT = "1616140317555161061"
MSG_TIMESTAMP, MSG_NONCE = "1409659813", "1372623149"
MSG_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
MSG_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/"
    "sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJ"
    "YuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUca"
    "llcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5P"
    "l/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)


@pytest.fixture(scope="module")
def crypto() -> WechatCrypto:
    return WechatCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_RECEIVE_ID)


def test_official_account_url_check_vector() -> None:
    assert sha1_signature(OA_TOKEN, OA_TIMESTAMP, OA_NONCE) == OA_SIGNATURE
    assert signature_matches(OA_SIGNATURE, OA_TOKEN, OA_TIMESTAMP, OA_NONCE)
    assert signature_matches(OA_SIGNATURE.upper(), OA_NONCE, OA_TOKEN, OA_TIMESTAMP)  # order-free, hex case
    assert not signature_matches(OA_SIGNATURE, "AAAAB", OA_TIMESTAMP, OA_NONCE)
    assert not signature_matches("", OA_TOKEN, OA_TIMESTAMP, OA_NONCE)


def test_wecom_url_check_vector(crypto: WechatCrypto) -> None:
    assert crypto.sign(URL_TIMESTAMP, URL_NONCE, URL_ECHOSTR) == URL_SIGNATURE
    crypto.verify(URL_SIGNATURE, URL_TIMESTAMP, URL_NONCE, URL_ECHOSTR)
    assert crypto.decrypt(URL_ECHOSTR) == URL_PLAINTEXT


def test_wecom_message_vector(crypto: WechatCrypto) -> None:
    crypto.verify(MSG_SIGNATURE, MSG_TIMESTAMP, MSG_NONCE, MSG_ENCRYPT)
    fields = parse_xml(crypto.decrypt(MSG_ENCRYPT))
    assert fields["MsgId"] == "4561255354251345929"
    assert fields["FromUserName"] == "mycreate"
    assert fields["ToUserName"] == WECOM_RECEIVE_ID
    assert (fields["MsgType"], fields["Content"], fields["CreateTime"]) == ("text", "hello", MSG_TIMESTAMP)


def test_encrypting_with_the_vectors_random_prefix_reproduces_their_ciphertext(crypto: WechatCrypto) -> None:
    """The random 16 bytes of each vector, read back from its plaintext, make encrypt() known-answer too."""
    for encrypted in (URL_ECHOSTR, MSG_ENCRYPT):
        key = aes_key(WECOM_AES_KEY)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        prefix = (decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize())[:16]
        assert crypto.encrypt(crypto.decrypt(encrypted), prefix=prefix) == encrypted


def test_wrong_msg_signature_is_refused(crypto: WechatCrypto) -> None:
    with pytest.raises(BadSignature, match="msg_signature does not match"):
        crypto.verify(MSG_SIGNATURE, MSG_TIMESTAMP, "1372623150", MSG_ENCRYPT)


def test_a_message_for_another_receive_id_is_refused() -> None:
    other = WechatCrypto(WECOM_TOKEN, WECOM_AES_KEY, "wx0000000000000000")
    with pytest.raises(BadSignature, match="another appid"):
        other.decrypt(MSG_ENCRYPT)


@pytest.mark.parametrize(
    ("encrypted", "problem"),
    [
        ("not base64!", "not base64"),
        (MSG_ENCRYPT[:-8] + "==", "not base64|whole number"),
        (base64.b64encode(base64.b64decode(MSG_ENCRYPT)[:-5]).decode(), "whole number of AES blocks"),
        ("", "whole number of AES blocks"),
        (base64.b64encode(base64.b64decode(MSG_ENCRYPT)[:-16]).decode(), "padded plaintext"),
        (base64.b64encode(b"\x00" * 64).decode(), "padded plaintext"),
    ],
    ids=["not-base64", "cut-base64", "truncated", "empty", "last-block-missing", "garbage"],
)
def test_garbled_ciphertext_is_malformed(crypto: WechatCrypto, encrypted: str, problem: str) -> None:
    with pytest.raises(MalformedBody, match=problem):
        crypto.decrypt(encrypted)


def test_a_ciphertext_under_another_key_does_not_decrypt(crypto: WechatCrypto) -> None:
    other = WechatCrypto(WECOM_TOKEN, "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", WECOM_RECEIVE_ID)
    with pytest.raises((MalformedBody, BadSignature)):
        crypto.decrypt(other.encrypt("<xml><MsgId>1</MsgId></xml>"))


@given(message=st.text(max_size=2000), receive_id=st.text(min_size=1, max_size=40))
def test_encrypt_then_decrypt_is_the_identity(message: str, receive_id: str) -> None:
    crypto = WechatCrypto(WECOM_TOKEN, WECOM_AES_KEY, receive_id)
    encrypted = crypto.encrypt(message)
    assert len(base64.b64decode(encrypted)) % 32 == 0  # padded to 32-byte blocks
    assert crypto.decrypt(encrypted) == message


@given(data=st.binary(max_size=300))
def test_decrypting_arbitrary_bytes_only_ever_refuses_cleanly(data: bytes) -> None:
    crypto = WechatCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_RECEIVE_ID)
    try:
        message = crypto.decrypt(base64.b64encode(data).decode())
    except (MalformedBody, BadSignature) as exc:
        assert exc.status in (400, 401)
    else:
        assert isinstance(message, str)


def test_timestamps_outside_the_window_are_refused() -> None:
    now = 1_800_000_000.0
    assert check_timestamp("1800000100", now=now, tolerance=300) == 1_800_000_100
    with pytest.raises(BadSignature, match="in the past"):
        check_timestamp("1799999699", now=now, tolerance=300)
    with pytest.raises(BadSignature, match="in the future"):
        check_timestamp("1800000301", now=now, tolerance=300)
    for bad in ("", "17e9", "-1", "１８００００００００", "99999999999999"):
        with pytest.raises(BadSignature, match="not a Unix time"):
            check_timestamp(bad, now=now, tolerance=300)


def test_aes_keys_are_checked_without_being_quoted() -> None:
    assert len(aes_key(WECOM_AES_KEY)) == 32
    for bad in ("short", WECOM_AES_KEY[:-1] + "!", WECOM_AES_KEY + "A"):
        with pytest.raises(ValueError, match="EncodingAESKey") as info:
            aes_key(bad)
        assert bad not in str(info.value)


# --- the callback XML ---------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<xml><Content>&lol3;</Content></xml>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Content>&xxe;</Content></xml>'
)


def test_parse_xml_reads_cdata_and_plain_children() -> None:
    fields = parse_xml(
        '<?xml version="1.0" encoding="UTF-8"?><xml><ToUserName><![CDATA[gh_1]]></ToUserName>'
        "<CreateTime>1348831860</CreateTime><Content><![CDATA[<b>你好</b> & bye]]></Content>"
        "<Content>second</Content><ScanCodeInfo><ScanType>qrcode</ScanType></ScanCodeInfo></xml>"
    )
    assert fields["ToUserName"] == "gh_1"
    assert fields["CreateTime"] == "1348831860"
    assert fields["Content"] == "<b>你好</b> & bye"  # the first of repeated elements
    assert "ScanType" not in fields


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, XXE, '<!DOCTYPE xml SYSTEM "http://evil.example/x.dtd"><xml/>'])
def test_parse_xml_refuses_doctypes_and_entities(xml: str) -> None:
    with pytest.raises(MalformedBody, match="DOCTYPE"):
        parse_xml(xml)


@pytest.mark.parametrize("xml", ["", "<xml><Content>hi</xml>", "not xml at all", "<xml>&undefined;</xml>"])
def test_parse_xml_refuses_malformed_xml(xml: str) -> None:
    with pytest.raises(MalformedBody, match="not XML"):
        parse_xml(xml)


def test_parse_xml_wants_an_xml_root() -> None:
    with pytest.raises(InvalidPayload, match="root element"):
        parse_xml("<html><body/></html>")


# --- Official Account normalization (payloads from the 接收普通消息 / 接收事件推送 docs) -------------

OA = WechatAccount.model_validate(
    {"id": "oa", "name": "OA", "appid": WECOM_RECEIVE_ID, "token": "AAAAA", "contact_menu_keys": ["CONTACT_AGENT"]}
)
NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def oa_fields(msg_type: str, **extra: str) -> dict[str, str]:
    return {
        "ToUserName": "toUser",
        "FromUserName": "fromUser",
        "CreateTime": "1348831860",
        "MsgType": msg_type,
        **extra,
    }


def test_oa_text_message() -> None:
    event = official_account_event(OA, oa_fields("text", Content="this is a test", MsgId="1234567890123456"), NOW)
    assert event is not None
    assert event.channel == Channel.WECHAT
    assert event.account_id == "oa"
    assert event.conversation_key == "wechat:oa:fromUser"
    assert event.customer.platform_id == "fromUser"
    assert event.dedup_key == "1234567890123456"
    assert event.event_id == event_id(Channel.WECHAT, "oa", "1234567890123456")
    assert event.message.text == "this is a test"
    assert event.occurred_at == datetime(2012, 9, 28, 11, 31, tzinfo=UTC)
    assert event.received_at == NOW
    assert event.metadata == {"msg_type": "text"}


def test_oa_image_message() -> None:
    fields = oa_fields("image", PicUrl="http://mmbiz.qpic.cn/x", MediaId="media_id", MsgId="1")
    event = official_account_event(OA, fields, NOW)
    assert event is not None
    (attachment,) = event.message.attachments
    assert (attachment.name, attachment.content_type, attachment.url) == ("image.jpg", "image/jpeg", fields["PicUrl"])
    assert event.metadata == {"msg_type": "image", "media_id": "media_id"}


def test_oa_voice_message_with_recognition() -> None:
    fields = oa_fields("voice", MediaId="m", Format="speex", Recognition="腾讯微信团队", MsgId="2")
    event = official_account_event(OA, fields, NOW)
    assert event is not None
    assert event.message.text == "腾讯微信团队"
    assert event.message.attachments[0].content_type == "audio/speex"
    assert event.metadata["recognition"] == "true"


@pytest.mark.parametrize("msg_type", ["video", "shortvideo"])
def test_oa_video_messages(msg_type: str) -> None:
    fields = oa_fields(msg_type, MediaId="m", ThumbMediaId="t", MsgId="3")
    event = official_account_event(OA, fields, NOW)
    assert event is not None
    assert event.message.attachments[0].content_type == "video/mp4"
    assert event.metadata == {"msg_type": msg_type, "media_id": "m", "thumb_media_id": "t"}


def test_oa_location_message() -> None:
    fields = oa_fields("location", Location_X="23.134521", Location_Y="113.358803", Scale="20", Label="位置信息")
    event = official_account_event(OA, {**fields, "MsgId": "4"}, NOW)
    assert event is not None
    assert event.message.text == "位置信息\n23.134521,113.358803"
    assert event.metadata["latitude"] == "23.134521"
    assert event.metadata["longitude"] == "113.358803"


def test_oa_link_message() -> None:
    fields = oa_fields("link", Title="公众平台官网链接", Description="公众平台官网链接", Url="url", MsgId="5")
    event = official_account_event(OA, fields, NOW)
    assert event is not None
    assert event.message.text == "公众平台官网链接\n公众平台官网链接\nurl"
    assert event.metadata["link_url"] == "url"


def test_oa_unknown_message_types_still_reach_a_human() -> None:
    event = official_account_event(OA, oa_fields("hologram", MsgId="6"), NOW)
    assert event is not None
    assert "unsupported" in event.message.text


@pytest.mark.parametrize(
    "extra",
    [
        {"Event": "subscribe"},
        {"Event": "subscribe", "EventKey": "qrscene_123123", "Ticket": "TICKET"},
        {"Event": "unsubscribe"},
        {"Event": "SCAN", "EventKey": "SCENE_VALUE"},
        {"Event": "LOCATION", "Latitude": "23.137466", "Longitude": "113.352425"},
        {"Event": "VIEW", "EventKey": "www.qq.com"},
        {"Event": "CLICK", "EventKey": "LATEST_NEWS"},
    ],
    ids=lambda extra: "-".join(extra.values())[:30],
)
def test_oa_events_nobody_must_answer_publish_nothing(extra: dict[str, str]) -> None:
    assert official_account_event(OA, oa_fields("event", **extra), NOW) is None


def test_oa_a_contact_menu_click_opens_a_contact() -> None:
    event = official_account_event(OA, oa_fields("event", Event="CLICK", EventKey="CONTACT_AGENT"), NOW)
    assert event is not None
    assert event.dedup_key == "fromUser:1348831860:CLICK"
    assert event.message.text == "[menu] CONTACT_AGENT"
    assert event.metadata == {"msg_type": "event", "event": "CLICK", "event_key": "CONTACT_AGENT"}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"MsgType": "text", "CreateTime": "1", "Content": "x"}, "FromUserName"),
        ({"FromUserName": "u", "CreateTime": "1"}, "MsgType"),
        ({"FromUserName": "u", "MsgType": "text", "CreateTime": "yesterday"}, "CreateTime"),
        ({"FromUserName": "u", "MsgType": "event", "CreateTime": "1"}, "Event"),
    ],
)
def test_oa_incomplete_messages_are_invalid(fields: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidPayload, match=problem):
        official_account_event(OA, fields, NOW)


def test_oa_message_with_an_overlong_openid_is_invalid() -> None:
    with pytest.raises(InvalidPayload, match="FromUserName"):
        official_account_event(OA, oa_fields("text", FromUserName="o" * 300, MsgId="7"), NOW)


# --- WeCom customer service normalization (kf/sync_msg answer samples) ---------------------------


def kf(msgtype: str, content: dict[str, Any] | None = None, *, origin: int = 3) -> KfMessage:
    return KfMessage.model_validate(
        {
            "msgid": "from_msgid_4622416642169452483",
            "open_kfid": "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q",
            "external_userid": "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw",
            "send_time": 1615478585,
            "origin": origin,
            "servicer_userid": "Zhangsan",
            "msgtype": msgtype,
            **(content or {}),
        }
    )


def test_kf_customer_text() -> None:
    event = kf_contact_event("kf", kf("text", {"text": {"content": "你好", "menu_id": "101"}}), NOW)
    assert event is not None
    assert event.conversation_key == "wechat:kf:wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q:wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"
    assert event.customer.platform_id == "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"
    assert event.dedup_key == "from_msgid_4622416642169452483"
    assert event.event_id == event_id(Channel.WECHAT, "kf", "from_msgid_4622416642169452483")
    assert event.message.text == "你好"
    assert event.occurred_at == datetime.fromtimestamp(1615478585, UTC)
    assert event.metadata == {
        "msg_type": "text",
        "open_kfid": "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q",
        "servicer_userid": "Zhangsan",
        "menu_id": "101",
    }


@pytest.mark.parametrize(
    ("msgtype", "content_type"),
    [("image", "image/jpeg"), ("voice", "audio/amr"), ("video", "video/mp4"), ("file", "application/octet-stream")],
)
def test_kf_media(msgtype: str, content_type: str) -> None:
    event = kf_contact_event("kf", kf(msgtype, {msgtype: {"media_id": "MEDIA"}}), NOW)
    assert event is not None
    assert event.message.attachments[0].content_type == content_type
    assert event.metadata["media_id"] == "MEDIA"


def test_kf_location_link_card_and_miniprogram() -> None:
    location = kf(
        "location", {"location": {"latitude": 23.1, "longitude": 113.3, "name": "广州塔", "address": "阅江西路"}}
    )
    link = kf("link", {"link": {"title": "T", "desc": "D", "url": "https://example.com", "pic_url": "p"}})
    card = kf("business_card", {"business_card": {"userid": "USERID"}})
    mini = kf("miniprogram", {"miniprogram": {"title": "Mini", "appid": "wxapp", "pagepath": "pages/index"}})
    texts = [kf_contact_event("kf", m, NOW) for m in (location, link, card, mini)]
    assert [e.message.text if e else None for e in texts] == [
        "广州塔\n阅江西路\n23.1,113.3",
        "T\nD\nhttps://example.com",
        "[business card] USERID",
        "Mini",
    ]


def test_kf_skips_servicer_and_system_messages() -> None:
    assert kf_contact_event("kf", kf("text", {"text": {"content": "您好"}}, origin=5), NOW) is None
    event = kf("event", {"event": {"event_type": "enter_session"}}, origin=4)
    assert kf_contact_event("kf", event, NOW) is None


def test_kf_a_customer_message_without_its_customer_is_invalid() -> None:
    message = KfMessage.model_validate({"msgid": "m", "origin": 3, "msgtype": "text", "text": {"content": "x"}})
    with pytest.raises(InvalidPayload, match="external_userid"):
        kf_contact_event("kf", message, NOW)


# --- account configuration ----------------------------------------------------------------------


def test_account_secrets_stay_secret() -> None:
    account = WecomKfAccount.model_validate(
        {
            "id": "kf",
            "name": "KF",
            "corp_id": WECOM_RECEIVE_ID,
            "secret": "s3cr3t-value",
            "token": WECOM_TOKEN,
            "encoding_aes_key": WECOM_AES_KEY,
            "api_base": "http://127.0.0.1:9/",
        }
    )
    assert account.api_base == "http://127.0.0.1:9"
    assert "s3cr3t-value" not in repr(account)
    assert WECOM_AES_KEY not in repr(account)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"encoding_aes_key": "too-short"}, "EncodingAESKey must be 43"),
        ({"token": "a!"}, "3-32 letters or digits"),
        ({"require_encryption": True}, "require_encryption needs encoding_aes_key"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_bad_official_accounts_are_refused(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as info:
        WechatAccount.model_validate({"id": "oa", "name": "OA", "appid": "wx1", "token": "AAAAA", **extra})
    assert "too-short" not in str(info.value)


# --- the WeCom API client -----------------------------------------------------------------------


@pytest.fixture
def wecom() -> FakeWecom:
    return FakeWecom(corp_id="ww1", secret="SECRET")


@pytest.fixture
async def api(wecom: FakeWecom) -> Any:
    async with httpx.AsyncClient(transport=wecom.transport()) as http:
        yield WecomKfApi(http, api_base="https://qyapi.test", corp_id="ww1", secret="SECRET")


def page_after(cursor: str) -> dict[str, Any]:
    return {"errcode": 0, "next_cursor": cursor + "+", "has_more": 0}


async def test_the_access_token_is_cached(wecom: FakeWecom, api: WecomKfApi) -> None:
    wecom.pages = {cursor: page_after(cursor) for cursor in ("", "a", "b")}
    for cursor in ("", "a", "b"):
        page = await api.sync_msg(cursor=cursor, token="T", open_kfid="wk1")
        assert page.next_cursor == cursor + "+"
    assert wecom.tokens_issued == 1
    assert wecom.sync_bodies[-1] == {"cursor": "b", "token": "T", "limit": 1000, "open_kfid": "wk1"}


async def test_an_expired_access_token_is_renewed_once(wecom: FakeWecom, api: WecomKfApi) -> None:
    wecom.pages = {"": page_after("")}
    await api.access_token()
    wecom.failures = [TOKEN_EXPIRED]
    page = await api.sync_msg(cursor="", token="T", open_kfid="wk1")
    assert page.next_cursor == "+"
    assert wecom.tokens_issued == 2


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (PlainTextResponse("oops", status_code=500), "HTTP 500"),
        (PlainTextResponse("<html>"), "did not answer JSON"),
        (JSONResponse([1]), "JSON object"),
        (JSONResponse({"errcode": 40013, "errmsg": "invalid corpid"}), "errcode 40013 invalid corpid"),
        (JSONResponse({"errcode": 0}), "without an access_token"),
    ],
)
async def test_wecom_failures_are_unavailable_and_never_show_secrets(
    wecom: FakeWecom, api: WecomKfApi, answer: Response, problem: str
) -> None:
    wecom.answer = answer
    with pytest.raises(PlatformUnavailable, match=problem) as info:
        await api.sync_msg(cursor="", token="T", open_kfid="wk1")
    assert info.value.status == 503
    assert "SECRET" not in info.value.detail


async def test_a_network_failure_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        api = WecomKfApi(http, api_base="https://qyapi.test", corp_id="ww1", secret="SECRET")
        with pytest.raises(PlatformUnavailable, match="ConnectError"):
            await api.access_token()


def test_fresh_timestamps_pass() -> None:
    assert check_timestamp(str(int(time.time())), now=time.time(), tolerance=300) > 0
