"""Douyin: X-Douyin-Signature (SHA-1 of client_secret + body) with known answers, the envelope and its
two shapes of ``content``, and the normalization of private messages to contact events."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from contracts import Channel
from contracts.text import storable
from services.channels.common.ids import event_id
from services.channels.douyin.account import DouyinApp
from services.channels.douyin.events import (
    IGNORED_EVENTS,
    DouyinPayloadError,
    DouyinWebhook,
    challenge_of,
    decode_content,
    dedup_key,
    private_message,
    render,
    sent_at,
    to_contact_event,
)
from services.channels.douyin.signature import DouyinSignatureVerifier
from services.channels.exceptions import BadSignature

# The body of the Go signing example in the Webhooks overview (developer.open-douyin.com/docs/resource/
# zh-CN/dop/develop/webhooks/summarize). The page masks its secret as "***" and prints no result, so the
# expected values below were computed outside Python: printf '%s' "$secret$body" | sha1sum
DOC_BODY = b'{"event":"verify_webhook","client_key":"abc","content":{"challenge":12345}}'
VECTORS = [
    ("***", DOC_BODY, "f76a589bf14313f3a63d2a5e1904d5033c35db77"),
    ("dy-demo-secret-7f3a9c", DOC_BODY, "bafd47e54afd8d6561f3a55f2fffd1053b867bfa"),
    (
        "dy-demo-secret-7f3a9c",
        '{"event":"im_receive_msg","content":{"text":"你好"}}'.encode(),
        "b3ea8886f85dc6d58becbc85d9400429639d3b1d",
    ),
    ("", b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),  # SHA-1 of nothing (FIPS 180 test value)
]

# The text-message sample of 接收私信消息事件 (im_receive_msg), as in the platform docs and the
# SKIT.FlurlHttpClient.ByteDance test samples (content as an object).
TEXT_SAMPLE: dict[str, Any] = {
    "event": "im_receive_msg",
    "client_key": "asdfavetgbvasf",
    "from_user_id": "aaa-ae9b-4dbf-add1-bf67e4093fab",
    "to_user_id": "aaa-7ae0-4399-914a-5eb1df5861ba",
    "content": {
        "conversation_short_id": "@9Vxc1/yDU8sqaS+gN4koEc7912foPPiLPZVyrQmgKVQabPH460zdRmYqig357zEB"
        "MaXjKvvhvwY02ISB7llsWQ==",
        "server_message_id": "@9Vxc1/yDU8sqaS+gN4koEc7912foPPyAPpF2rgykLFgbafb560zdRmYqig357zEB"
        "mWXVPshhwyd/y/7BQpXy/w==",
        "conversation_type": 1,
        "create_time": 1681303285997,
        "message_type": "text",
        "source": "",
        "scene_type": 100,
        "text": "捷途70",
        "user_infos": [
            {"open_id": "aaa-ae9b-4dbf-add1-bf67e4093fab", "nick_name": "刘东", "avatar": "https://p3.douyinpic.com/a"},
            {"open_id": "aaa-7ae0-4399-914a-5eb1df5861ba", "nick_name": "毕节--捷途万丰店", "avatar": "https://p3.a"},
        ],
    },
}
RECEIVED = datetime(2026, 11, 22, 9, 30, 1, tzinfo=UTC)


def webhook(content: Any, **envelope: Any) -> DouyinWebhook:
    return DouyinWebhook.model_validate({**TEXT_SAMPLE, "content": content, **envelope})


def with_content(**fields: Any) -> DouyinWebhook:
    return webhook({**TEXT_SAMPLE["content"], **fields})


# --- signature -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("secret", "body", "expected"), VECTORS)
def test_signature_known_answers(secret: str, body: bytes, expected: str) -> None:
    verifier = DouyinSignatureVerifier(secret)
    assert verifier.sign(body) == expected
    verifier.verify(body, expected)
    verifier.verify(body, f" {expected.upper()} ")  # hex case and surrounding blanks do not matter


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing X-Douyin-Signature"),
        ("", "malformed"),
        ("sha1=bafd47e54afd8d6561f3a55f2fffd1053b867bfa", "malformed"),
        ("bafd47e54afd8d6561f3a55f2fffd1053b867bf", "malformed"),  # 39 digits
        ("bafd47e54afd8d6561f3a55f2fffd1053b867bfg", "malformed"),
        ("bafd47e54afd8d6561f3a55f2fffd1053b867bfé", "malformed"),  # non-ASCII must not crash the comparison
        ("f76a589bf14313f3a63d2a5e1904d5033c35db77", "does not match"),  # the same body under another secret
    ],
)
def test_signature_refusals_name_the_problem(header: str | None, problem: str) -> None:
    with pytest.raises(BadSignature, match=problem):
        DouyinSignatureVerifier("dy-demo-secret-7f3a9c").verify(DOC_BODY, header)


def test_a_tampered_body_fails() -> None:
    verifier = DouyinSignatureVerifier("dy-demo-secret-7f3a9c")
    with pytest.raises(BadSignature, match="does not match"):
        verifier.verify(DOC_BODY.replace(b"12345", b"12346"), "bafd47e54afd8d6561f3a55f2fffd1053b867bfa")


@given(body=st.binary(max_size=512), position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_breaks_the_signature(body: bytes, position: int, bit: int) -> None:
    verifier = DouyinSignatureVerifier("dy-demo-secret-7f3a9c")
    signature = verifier.sign(body)
    verifier.verify(body, signature)
    if body:
        flipped = bytearray(body)
        flipped[position % len(body)] ^= 1 << bit
        with pytest.raises(BadSignature):
            verifier.verify(bytes(flipped), signature)


def test_the_secret_stays_out_of_the_account_repr() -> None:
    app = DouyinApp(id="shop", name="Shop", client_key="awdemo", client_secret=SecretStr("dy-demo-secret-7f3a9c"))
    assert "dy-demo-secret-7f3a9c" not in repr(app)
    assert "dy-demo-secret-7f3a9c" not in app.model_dump_json()


# --- envelope and content --------------------------------------------------------------------------


def test_content_as_object_and_as_json_string_mean_the_same() -> None:
    as_object = with_content()
    as_string = webhook(json.dumps(TEXT_SAMPLE["content"], ensure_ascii=False))
    assert isinstance(as_string.content, str)
    assert private_message(as_object) == private_message(as_string)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"conversation_short_id": "c", ', "content is a string but not JSON"),
        ("[1, 2]", "content must be a JSON object, got an array"),
        ('"text"', "content must be a JSON object, got str"),
        (42, "content must be a JSON object, got a number"),
        (None, "content is missing"),
    ],
)
def test_content_that_is_not_an_object_is_refused(content: Any, problem: str) -> None:
    with pytest.raises(DouyinPayloadError, match=problem):
        decode_content(content)


def test_a_message_without_its_ids_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        private_message(webhook({"text": "hi"}))
    assert {err["loc"][0] for err in caught.value.errors()} == {"conversation_short_id", "server_message_id"}


def test_a_message_without_a_sender_is_refused() -> None:
    with pytest.raises(DouyinPayloadError, match="from_user_id"):
        private_message(webhook(TEXT_SAMPLE["content"], from_user_id=""))


@pytest.mark.parametrize(
    ("content", "challenge"),
    [({"challenge": 12345}, 12345), ('{"challenge": 12345}', 12345), ({"challenge": "abc"}, "abc")],
)
def test_the_verification_challenge_is_echoed_as_sent(content: Any, challenge: int | str) -> None:
    verification = DouyinWebhook.model_validate({"event": "verify_webhook", "client_key": "", "content": content})
    assert challenge_of(verification) == challenge


@pytest.mark.parametrize("content", [{}, {"challenge": None}, {"challenge": True}, {"challenge": {}}, "oops"])
def test_a_verification_without_a_challenge_is_refused(content: Any) -> None:
    with pytest.raises(DouyinPayloadError):
        challenge_of(DouyinWebhook.model_validate({"event": "verify_webhook", "content": content}))


def test_numeric_log_ids_are_kept_as_text() -> None:
    assert webhook({}, log_id=2023429834752345783).log_id == "2023429834752345783"


def test_the_documented_private_message_events_are_acknowledged_not_published() -> None:
    assert {"im_send_msg", "im_enter_direct_msg", "im_recall_msg", "im_group_receive_msg"} <= IGNORED_EVENTS.keys()
    assert "im_receive_msg" not in IGNORED_EVENTS


# --- dedup -----------------------------------------------------------------------------------------


def test_the_dedup_key_prefers_msg_id_then_log_id_then_the_message_id() -> None:
    message = private_message(with_content())
    assert dedup_key("msg-1", "log-1", message) == "msg-1"
    assert dedup_key(None, "log-1", message) == "log-1"
    assert dedup_key("  ", "log-1", message) == "log-1"
    assert dedup_key(None, None, message) == message.server_message_id
    with pytest.raises(DouyinPayloadError, match="longer than 512"):
        dedup_key("x" * 513, None, message)


def test_a_retry_gets_the_same_event_id_and_other_deliveries_do_not() -> None:
    first = event_id(Channel.DOUYIN, "shop", "msg-1")
    assert first == event_id(Channel.DOUYIN, "shop", "msg-1")
    assert first != event_id(Channel.DOUYIN, "shop", "msg-2")
    assert first != event_id(Channel.DOUYIN, "other", "msg-1")
    assert first != event_id(Channel.WEBCHAT, "shop", "msg-1")


# --- normalization ---------------------------------------------------------------------------------


def test_the_documented_text_message_becomes_a_contact() -> None:
    body = with_content()
    event = to_contact_event("shop", "msg-1", body, private_message(body), RECEIVED)
    assert event.channel is Channel.DOUYIN
    assert event.account_id == "shop"
    assert event.conversation_key == "douyin:shop:aaa-ae9b-4dbf-add1-bf67e4093fab"
    assert event.event_id == event_id(Channel.DOUYIN, "shop", "msg-1")
    assert event.dedup_key == "msg-1"
    assert event.customer.platform_id == "aaa-ae9b-4dbf-add1-bf67e4093fab"
    assert event.customer.display_name == "刘东"  # the sender's entry of user_infos, not the account's
    assert event.message.text == "捷途70"
    assert event.message.attachments == ()
    assert event.occurred_at == datetime(2023, 4, 12, 12, 41, 25, 997000, tzinfo=UTC)
    assert event.received_at == RECEIVED
    assert event.metadata == {
        "conversation_short_id": TEXT_SAMPLE["content"]["conversation_short_id"],
        "server_message_id": TEXT_SAMPLE["content"]["server_message_id"],
        "message_type": "text",
        "account_open_id": "aaa-7ae0-4399-914a-5eb1df5861ba",
        "scene_type": "100",
    }


def test_without_user_infos_or_time_the_contact_still_forms() -> None:
    body = webhook({"conversation_short_id": "c", "server_message_id": "m", "message_type": "text", "text": "在吗"})
    event = to_contact_event("shop", "m", body, private_message(body), RECEIVED)
    assert event.customer.display_name is None
    assert event.occurred_at == RECEIVED
    assert event.message.text == "在吗"


@pytest.mark.parametrize(
    ("fields", "text", "attachments"),
    [
        (
            {"message_type": "image", "resource_type": "image/png", "resource_url": "https://p.douyinpic.com/1.png"},
            "",
            [("image", "image/png", "https://p.douyinpic.com/1.png")],
        ),
        ({"message_type": "image", "resource_type": "png", "resource_url": ""}, "", [("image", "image/*", None)]),
        (
            {"message_type": "emoji", "resource_url": "https://p.douyinpic.com/e.gif", "resource_width": 120},
            "",
            [("emoji", "image/*", "https://p.douyinpic.com/e.gif")],
        ),
        ({"message_type": "user_local_image"}, "", [("image", "image/*", None)]),
        ({"message_type": "video", "item_id": "@8hxdhauTCMppanGnM4ltGM780mDqPP"}, "", [("video", "video/*", None)]),
        ({"message_type": "user_local_video"}, "", [("video", "video/*", None)]),
        (
            {
                "message_type": "retain_consult_card",
                "card_id": "@card",
                "card_status": 2,
                "card_data": [{"label": "姓名", "value": "张伟"}, {"label": "手机号", "value": 13800138000}],
            },
            "姓名: 张伟\n手机号: 13800138000",
            [],
        ),
        ({"message_type": "other"}, "", []),
        ({"message_type": "brand_new_kind", "text": "fallback"}, "fallback", []),
    ],
)
def test_each_message_type_becomes_text_and_attachment_metadata(
    fields: dict[str, Any], text: str, attachments: list[tuple[str, str, str | None]]
) -> None:
    message = private_message(with_content(**{"text": None, **fields}))
    rendered_text, rendered = render(message)
    assert rendered_text == text
    assert [(a.name, a.content_type, a.url) for a in rendered] == attachments


def test_media_and_card_ids_are_kept_for_agents() -> None:
    video = with_content(message_type="video", text=None, item_id="@video")
    assert to_contact_event("shop", "m", video, private_message(video), RECEIVED).metadata["item_id"] == "@video"
    card = with_content(message_type="retain_consult_card", card_id="@card", card_status=2, card_data=[])
    metadata = to_contact_event("shop", "m", card, private_message(card), RECEIVED).metadata
    assert (metadata["card_id"], metadata["card_status"]) == ("@card", "2")


@pytest.mark.parametrize(
    ("create_time", "expected"),
    [
        (1681303285997, datetime(2023, 4, 12, 12, 41, 25, 997000, tzinfo=UTC)),
        (1681303285, datetime(2023, 4, 12, 12, 41, 25, tzinfo=UTC)),  # seconds, tolerated
        (None, None),
        (0, None),
    ],
)
def test_create_time_is_milliseconds(create_time: int | None, expected: datetime | None) -> None:
    assert sent_at(create_time) == expected


@given(text=st.text(max_size=200), nick=st.text(min_size=1, max_size=40))
def test_both_content_shapes_normalize_identically(text: str, nick: str) -> None:
    content = {
        **TEXT_SAMPLE["content"],
        "text": text,
        "user_infos": [{"open_id": TEXT_SAMPLE["from_user_id"], "nick_name": nick}],
    }
    events = [
        to_contact_event("shop", "msg-1", body, private_message(body), RECEIVED)
        for body in (webhook(content), webhook(json.dumps(content)))
    ]
    assert events[0] == events[1]
    assert events[0].message.text == storable(text)  # NUL becomes U+FFFD: PostgreSQL cannot store it
    assert events[0].customer.display_name == (storable(nick.strip()[:256]) or None)
