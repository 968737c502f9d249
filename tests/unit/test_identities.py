"""Canonical identities: one form per channel, shared by the channel adapters and the router's identity API, so
that a caller, an e-mail sender or a follower and a manual link of their id name one customer."""

from datetime import UTC, datetime

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import Channel, identities
from contracts.identities import InvalidIdentity, canonical
from services.channels.douyin.events import DouyinWebhook, private_message
from services.channels.douyin.events import to_contact_event as douyin_event
from services.channels.email.inbox import EmailInbox, MimeLimits
from services.channels.email.mime import parse_mime
from services.channels.email.threads import to_contact_event as email_event
from services.channels.exceptions import InvalidPayload
from services.channels.phone.calls import TwilioCall, identify_caller, incoming_call
from services.channels.wechat.accounts import WechatAccount
from services.channels.wechat.kf_messages import KfMessage, kf_contact_event
from services.channels.wechat.official_messages import official_account_event

NOW = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
SID = "CA" + "0123456789abcdef" * 2
OPENID = "oLVPpjqs9BhvzwPj5A-vTYAX3GLc"  # an Official Account OpenID: 28 characters
EXTERNAL_USERID = "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"  # WeCom's external_userid: 32
DOUYIN_OPEN_ID = "_000f9pF8lTroNtA9pfLjPohf1qIUzLdiWRs"
DOUYIN_UUID_ID = "0da22181-d833-447f-995f-1beefea5bef3"  # the older open_id / union_id shape


@pytest.mark.parametrize(
    ("channel", "raw", "expected"),
    [
        (Channel.PHONE, "+86 138 0013 8000", "+8613800138000"),
        (Channel.PHONE, "+86-138-0013-8000", "+8613800138000"),
        (Channel.PHONE, "13800138000", "+8613800138000"),  # national: read in CN
        (Channel.PHONE, "(010) 6552 9988", "+861065529988"),
        (Channel.PHONE, "0086 138 0013 8000", "+8613800138000"),
        (Channel.PHONE, "tel:+86-138-0013-8000", "+8613800138000"),
        (Channel.PHONE, " +1 (415) 555-0100 ", "+14155550100"),
        (Channel.PHONE, "Client:alice", "client:alice"),
        (Channel.PHONE, "SIP:Alice@Example.COM;transport=tls", "sip:Alice@example.com"),
        (Channel.PHONE, f"anonymous:{SID}", f"anonymous:{SID}"),
        (Channel.EMAIL, "Zhang.Wei@Example.COM", "zhang.wei@example.com"),
        (Channel.EMAIL, "  li.na@example.net\t", "li.na@example.net"),
        (Channel.EMAIL, "zhang@xn--fsqu00a.xn--fiqs8s", "zhang@例子.中国"),  # one form for an IDN domain
        (Channel.EMAIL, "张伟@例子.中国", "张伟@例子.中国"),
        (Channel.WECHAT, OPENID, OPENID),
        (Channel.WECHAT, f" {EXTERNAL_USERID}\n", EXTERNAL_USERID),
        (Channel.DOUYIN, DOUYIN_OPEN_ID, DOUYIN_OPEN_ID),
        (Channel.DOUYIN, DOUYIN_UUID_ID, DOUYIN_UUID_ID),
        (Channel.WEBCHAT, " visitor 8f3a ", " visitor 8f3a "),  # the site's own id, untouched
    ],
)
def test_the_canonical_form(channel: Channel, raw: str, expected: str) -> None:
    assert canonical(channel, raw) == expected
    assert canonical(channel, expected) == expected


@pytest.mark.parametrize(
    ("channel", "raw", "why"),
    [
        (Channel.PHONE, "not a number", "not a phone number"),
        (Channel.PHONE, "+86 123", "not a phone number"),
        (Channel.PHONE, "1234", "not a phone number"),  # 12345 is a possible CN number (a hotline)
        (Channel.PHONE, "", "not a phone number"),
        (Channel.PHONE, "9" * 300, "not a phone number"),
        (Channel.PHONE, "client:", "must not be empty"),
        (Channel.PHONE, "client:al\x00ice", "control characters"),
        (Channel.PHONE, "client:" + "a" * 250, "longer than 256"),
        (Channel.PHONE, "sip:@example.com", "sip:<user>@<host>"),
        (Channel.PHONE, "sip:alice smith@example.com", "sip:<user>@<host>"),
        (Channel.PHONE, "anonymous:CA 1", "anonymous:<call id>"),
        (Channel.EMAIL, "Not An Email", "must have an @-sign"),
        (Channel.EMAIL, "Zhang Wei <zhang@example.com>", "display name"),
        (Channel.EMAIL, "zhang@localhost", "should have a period"),
        (Channel.EMAIL, "zhang@example.invalid", "special-use"),
        (Channel.EMAIL, "a..b@example.com", "two periods"),
        (Channel.EMAIL, "zhang@exa\x00mple.com", "invalid characters"),
        (Channel.EMAIL, "a" * 250 + "@example.com", "too long"),
        (Channel.WECHAT, "oX1", "6 to 64"),
        (Channel.WECHAT, "o" * 65, "6 to 64"),
        (Channel.WECHAT, "oLVPpjqs9Bhv zwPj5A", "WeChat id"),
        (Channel.WECHAT, "oLVPpjqs9Bhv/zwPj5A", "letters, digits"),
        (Channel.WECHAT, "oLVPpjqs9Bhv\u202ezwPj5A", "letters, digits"),  # a bidi override
        (Channel.DOUYIN, "抖音用户12345", "Douyin id"),
        (Channel.DOUYIN, "_000f9pF8l\x00", "Douyin id"),
        (Channel.WEBCHAT, "   ", "blank"),
        (Channel.WEBCHAT, "visitor\x00", "control characters"),
        (Channel.WEBCHAT, "visitor\ud800", "unpaired surrogate"),
    ],
)
def test_what_is_no_identity_is_refused_saying_why(channel: Channel, raw: str, why: str) -> None:
    with pytest.raises(InvalidIdentity, match=why):
        canonical(channel, raw)


def test_national_numbers_are_read_in_the_region_given() -> None:
    assert identities.phone("(415) 555-0100", "US") == "+14155550100"
    assert identities.phone("+8613800138000", "US") == "+8613800138000"  # a country code wins
    with pytest.raises(InvalidIdentity, match=r"E\.164"):
        identities.phone("13800138000", None)
    assert identities.phone_region("cn") == "CN"
    with pytest.raises(InvalidIdentity, match="region"):
        identities.phone_region("XX")


NUMBERS = st.sampled_from(["+8613800138000", "+861065529988", "+14155550100", "+442079460958", "+85291234567"])


@given(number=NUMBERS, style=st.sampled_from([0, 1, 2, 3]), padding=st.sampled_from(["", " ", "\t"]))
def test_every_way_of_writing_a_number_is_one_identity(number: str, style: int, padding: str) -> None:
    parsed = phonenumbers.parse(number)
    region = phonenumbers.region_code_for_number(parsed)
    written = phonenumbers.format_number(parsed, style)  # E164, INTERNATIONAL, NATIONAL, RFC3966
    assert identities.phone(f"{padding}{written}{padding}", region) == number


@settings(max_examples=300)
@given(channel=st.sampled_from(list(Channel)), raw=st.text(max_size=80))
def test_canonical_forms_are_fixed_points(channel: Channel, raw: str) -> None:
    # whatever the adapters or the API store is stored once: canonicalizing again changes nothing
    try:
        once = canonical(channel, raw)
    except InvalidIdentity:
        return
    assert canonical(channel, once) == once
    assert 0 < len(once) <= identities.MAX_LENGTH


@settings(max_examples=200)
@given(local=st.from_regex(r"[A-Za-z0-9._%+-]{1,20}", fullmatch=True), domain=st.sampled_from(["Example.COM", "b.cn"]))
def test_email_case_does_not_make_another_customer(local: str, domain: str) -> None:
    try:
        lower = identities.email(f"{local}@{domain}".lower())
    except InvalidIdentity:
        return
    assert identities.email(f"{local}@{domain}") == identities.email(f"{local.upper()}@{domain.upper()}") == lower


# --- the adapters build the same identities ----------------------------------------------------------


@pytest.mark.parametrize("written", ["+86 138 0013 8000", "13800138000", "+8613800138000"])
def test_a_caller_is_who_a_manual_link_of_their_number_names(written: str) -> None:
    call = TwilioCall.model_validate(
        {"CallSid": SID, "CallStatus": "ringing", "From": "+8613800138000", "To": "+861065529988"}
    )
    event = incoming_call("hotline", "CN", call, NOW)
    assert event.customer.platform_id == canonical(Channel.PHONE, written) == "+8613800138000"


@pytest.mark.parametrize(
    "raw", ["client:alice", "sip:alice@Example.com;transport=tls", "13800138000", "+1 415 555 0100"]
)
def test_every_caller_identity_the_phone_adapter_makes_is_canonical(raw: str) -> None:
    caller = identify_caller(raw, SID, "CN")
    assert caller.kind != "unparseable"
    assert canonical(Channel.PHONE, caller.platform_id) == caller.platform_id


def test_a_withheld_caller_stays_one_call_even_when_from_looks_like_an_anonymous_identity() -> None:
    assert identify_caller("anonymous:CAother", SID, "CN").platform_id == f"anonymous:{SID}"


INBOX = EmailInbox.model_validate(
    {"id": "support", "name": "Support", "address": "support@shop.example.com", "provider": "raw", "bearer_token": "t"}
)


def mail(sender: str) -> bytes:
    return f"From: {sender}\r\nTo: support@shop.example.com\r\nSubject: hi\r\n\r\nhello".encode()


@pytest.mark.parametrize(
    ("sender", "linked"),
    [
        ("Zhang Wei <Zhang.Wei@Example.COM>", "zhang.wei@example.com"),
        ("zhang.wei@example.com", "Zhang.Wei@EXAMPLE.com"),
        ("=?utf-8?b?5byg5Lyf?= <zhang@xn--fsqu00a.xn--fiqs8s>", "zhang@例子.中国"),
    ],
)
def test_an_email_sender_is_who_a_manual_link_of_their_address_names(sender: str, linked: str) -> None:
    event = email_event(INBOX, parse_mime(mail(sender), MimeLimits()), NOW)
    assert event.customer.platform_id == canonical(Channel.EMAIL, linked)


@pytest.mark.parametrize("sender", ["root@localhost", "a..b@example.com", "x@example.invalid"])
def test_an_email_from_no_valid_address_is_refused_saying_why(sender: str) -> None:
    with pytest.raises(InvalidPayload, match="sender address"):
        email_event(INBOX, parse_mime(mail(sender), MimeLimits()), NOW)


OA = WechatAccount.model_validate({"id": "oa", "name": "OA", "appid": "wx5823bf96d3bd56c7", "token": "AAAAA"})


def oa_text(openid: str) -> dict[str, str]:
    return {"FromUserName": openid, "CreateTime": "1348831860", "MsgType": "text", "Content": "hi", "MsgId": "1"}


def test_wechat_senders_are_checked_for_shape() -> None:
    event = official_account_event(OA, oa_text(f" {OPENID} "), NOW)
    assert event is not None
    assert event.customer.platform_id == canonical(Channel.WECHAT, OPENID) == OPENID
    for bad in ("o" * 300, "oX1", "o<script>x</script>", "oLVPpjqs9Bhv\u202ezwPj5A"):
        with pytest.raises(InvalidPayload, match="FromUserName"):
            official_account_event(OA, oa_text(bad), NOW)
    kf = KfMessage(msgid="m1", open_kfid="wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q", origin=3, msgtype="text", send_time=1)
    assert kf_contact_event("kf", kf.model_copy(update={"external_userid": EXTERNAL_USERID}), NOW) is not None
    with pytest.raises(InvalidPayload, match="external_userid"):
        kf_contact_event("kf", kf.model_copy(update={"external_userid": "wm 1"}), NOW)


def test_douyin_senders_are_checked_for_shape() -> None:
    content = {"conversation_short_id": "c1", "server_message_id": "s1", "message_type": "text", "text": "hi"}
    for open_id in (DOUYIN_OPEN_ID, DOUYIN_UUID_ID):
        webhook = DouyinWebhook(event="im_receive_msg", from_user_id=open_id, content=content)
        event = douyin_event("app", "d1", webhook, private_message(webhook), NOW)
        assert event.customer.platform_id == canonical(Channel.DOUYIN, open_id) == open_id
    webhook = DouyinWebhook(event="im_receive_msg", from_user_id="抖音用户", content=content)
    with pytest.raises(InvalidPayload, match="from_user_id"):
        douyin_event("app", "d1", webhook, private_message(webhook), NOW)
