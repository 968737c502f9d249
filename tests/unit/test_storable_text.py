"""Text PostgreSQL cannot store (NUL, lone surrogates) becomes U+FFFD in every contract, whoever builds it: a
channel adapter from a webhook, or a consumer from a record already on a topic."""

import json
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from contracts import Channel, ContactEvent, Customer, Message, RoutingCommand
from contracts.text import storable, validate_json

NOW = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


def _event(text: str, **extra: object) -> ContactEvent:
    return ContactEvent.model_validate(
        {
            "event_id": uuid.uuid4(),
            "channel": "webchat",
            "account_id": "shop",
            "conversation_key": "webchat:shop:c\x00",
            "dedup_key": "msg_\ud800",
            "customer": {"platform_id": "v\x001", "display_name": "张\x00伟"},
            "message": {"text": text, "attachments": [{"name": "a\x00.jpg", "content_type": "image/jpeg"}]},
            "occurred_at": NOW,
            "received_at": NOW,
            "metadata": {"subject\x00": "hi\udcff"},
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("你好\x00", "你好\ufffd"),
        ("\x00\x00", "\ufffd\ufffd"),
        ("cut \ud83d", "cut \ufffd"),  # half of an emoji
        ("\ude00 tail", "\ufffd tail"),  # the other half
        ("pair \ud83d\ude00", "pair 😀"),  # a pair kept as two code points is the character
        ("bytes \udcff\udc80", "bytes \ufffd\ufffd"),  # what surrogateescape leaves of undecodable bytes
        ("plain 😀 \ufffd", "plain 😀 \ufffd"),
    ],
)
def test_storable(text: str, stored: str) -> None:
    assert storable(text) == stored
    stored.encode("utf-8")  # PostgreSQL's encoding takes it


def test_storable_text_is_returned_as_it_is() -> None:
    text = "nothing to change 你好"
    assert storable(text) is text


@given(st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF)))
def test_anything_becomes_storable_and_keeps_its_length_or_less(text: str) -> None:
    stored = storable(text)
    assert "\x00" not in stored
    stored.encode("utf-8")
    assert len(stored) <= len(text)


def test_every_string_of_a_contract_is_made_storable_nested_ones_too() -> None:
    event = _event("你好\x00")
    assert event.message.text == "你好\ufffd"
    assert event.conversation_key == "webchat:shop:c\ufffd"
    assert event.dedup_key == "msg_\ufffd"
    assert event.customer == Customer(platform_id="v\ufffd1", display_name="张\ufffd伟")
    assert event.message.attachments[0].name == "a\ufffd.jpg"
    assert event.metadata == {"subject\ufffd": "hi\ufffd"}
    assert Message(text="\ud83d") == Message(text="\ufffd")  # pydantic alone refuses a lone surrogate
    command = RoutingCommand.model_validate(
        {
            "command_id": uuid.uuid4(),
            "type": "escalate",
            "issued_at": NOW,
            "contact_id": uuid.uuid4(),
            "target_group": "crisis",
            "reason": "曝光\x00",
        }
    )
    assert command.reason == "曝光\ufffd"


def test_a_cleaned_event_round_trips_and_serializes() -> None:
    event = _event("half \ud83d")
    again = ContactEvent.model_validate_json(event.model_dump_json())
    assert again == event
    assert again.channel is Channel.WEBCHAT


def test_an_event_already_on_a_topic_with_nul_escapes_is_cleaned_when_parsed() -> None:
    raw = _event("x").model_dump_json().replace('"text":"x"', '"text":"你好\\u0000"')
    assert ContactEvent.model_validate_json(raw).message.text == "你好\ufffd"


def test_json_with_an_escaped_lone_surrogate_is_accepted() -> None:
    raw = _event("x").model_dump_json().replace('"text":"x"', '"text":"cut \\ud83d, and \\\\ud83d stays text"')
    with pytest.raises(ValidationError):  # pydantic's own parser refuses it
        ContactEvent.model_validate_json(raw)
    assert validate_json(ContactEvent, raw).message.text == "cut \ufffd, and \\ud83d stays text"
    assert validate_json(ContactEvent, raw.encode()).message.text == "cut \ufffd, and \\ud83d stays text"


class _Plain(BaseModel):
    text: str


@pytest.mark.parametrize(
    "body",
    [
        '{"text": "\\ud83d"',  # not JSON, surrogate or not
        "[" * 100_000 + "]" * 100_000 + ' "\\ud83d"',  # deeper than any parser goes: refused, not a RecursionError
        b'{"text": "\\ud83d \xff"}',  # not UTF-8
    ],
)
def test_what_is_not_json_stays_refused_as_pydantic_refuses_it(body: str | bytes) -> None:
    with pytest.raises(ValidationError) as raised:
        validate_json(_Plain, body)
    assert raised.value.errors()[0]["type"] == "json_invalid"


def test_other_models_are_cleaned_by_validate_json_too() -> None:
    assert validate_json(_Plain, json.dumps({"text": "a\ud800"})).text == "a\ufffd"
