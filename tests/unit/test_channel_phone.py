"""Phone (Twilio Voice): signatures against Twilio's published vectors, the URL Twilio signed, form
parsing, caller identification, normalization to contact events, and the TwiML answer."""

import random
from datetime import UTC, datetime
from urllib.parse import urlencode

import defusedxml.ElementTree as SafeET
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import Channel, ContactEventKind
from services.channels.common.ids import event_id
from services.channels.exceptions import BadSignature, MalformedBody
from services.channels.phone.account import PhoneLine
from services.channels.phone.calls import (
    CallStatus,
    TwilioCall,
    ended_call,
    identify_caller,
    incoming_call,
)
from services.channels.phone.twilio import (
    TwilioRequestValidator,
    compute_signature,
    parse_form,
    url_variants,
)
from services.channels.phone.twiml import enqueue_twiml

# ---------------------------------------------------------------- Twilio's published vectors

DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+12349013030"),
    ("Digits", "1234"),
    ("From", "+12349013030"),
    ("To", "+18005551212"),
]
LIB_PARAMS = [  # twilio-python tests/unit/test_request_validator.py
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
]


def test_the_documented_vector() -> None:
    assert compute_signature(b"12345", DOC_URL, DOC_PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (DOC_URL, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        ("https://mycompany.com:443/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
        ("http://mycompany.com:80/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
    ],
)
def test_the_reference_library_vectors(url: str, expected: str) -> None:
    assert compute_signature(b"12345", url, LIB_PARAMS) == expected


def test_repeated_parameters_are_signed_sorted_by_value() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert compute_signature(b"12345", DOC_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("requested", "signed", "expected"),
    [
        # the reference validator's port rules: a signature with or without the port is accepted
        ("https://mycompany.com/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", True),
        ("https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w=", True),
        ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", True),
        ("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4=", True),
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", True),
        # …but never for another scheme, host, path or query
        ("http://mycompany.com/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", False),
        ("https://mycompany.org/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", False),
        ("https://mycompany.com/other.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", False),
        ("https://mycompany.com/myapp.php?foo=1&bar=3", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", False),
    ],
)
def test_signatures_with_and_without_the_port(requested: str, signed: str, expected: bool) -> None:
    validator = TwilioRequestValidator(["12345"], "https://unused.example", trust_forwarded_headers=False)
    if expected:
        validator.verify(requested, LIB_PARAMS, signed)
    else:
        with pytest.raises(BadSignature, match="does not sign"):
            validator.verify(requested, LIB_PARAMS, signed)


def test_url_variants() -> None:
    assert url_variants("https://a.example/p?q=1") == ("https://a.example/p?q=1", "https://a.example:443/p?q=1")
    assert url_variants("http://[::1]:8080/p") == ("http://[::1]/p", "http://[::1]:8080/p")
    assert url_variants("https://a.example:port/p") == ("https://a.example:port/p",)


def test_the_validator_rebuilds_the_url_from_the_public_url_path_and_query() -> None:
    validator = TwilioRequestValidator(["12345"], "https://mycompany.com/", trust_forwarded_headers=False)
    url = validator.url("/myapp.php", "foo=1&bar=2", {"host": "10.0.0.7:8000"})
    assert url == DOC_URL
    validator.verify(url, DOC_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    # parameter order does not matter, any change does
    validator.verify(url, list(reversed(DOC_PARAMS)), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    with pytest.raises(BadSignature):
        validator.verify(url, [*DOC_PARAMS[:-1], ("To", "+18005551213")], "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    with pytest.raises(BadSignature):
        validator.verify(url, [*DOC_PARAMS, ("Extra", "")], "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


def test_a_path_prefix_of_the_public_url_is_kept() -> None:
    validator = TwilioRequestValidator(["t"], "https://example.com/kefu", trust_forwarded_headers=False)
    assert validator.url("/webhooks/phone/x", "", {}) == "https://example.com/kefu/webhooks/phone/x"


def test_forwarded_headers_are_honoured_only_when_trusted() -> None:
    headers = {"x-forwarded-proto": "HTTPS, http", "x-forwarded-host": "public.example.org, proxy.internal"}
    trusted = TwilioRequestValidator(["t"], "http://internal:8000", trust_forwarded_headers=True)
    untrusted = TwilioRequestValidator(["t"], "http://internal:8000", trust_forwarded_headers=False)
    assert trusted.url("/webhooks/phone/x", "a=1", headers) == "https://public.example.org/webhooks/phone/x?a=1"
    assert untrusted.url("/webhooks/phone/x", "a=1", headers) == "http://internal:8000/webhooks/phone/x?a=1"
    # absent or nonsense headers fall back to the public URL
    assert trusted.url("/p", "", {}) == "http://internal:8000/p"
    assert trusted.url("/p", "", {"x-forwarded-proto": "gopher"}) == "http://internal:8000/p"


def test_missing_wrong_and_rotated_tokens() -> None:
    primary = TwilioRequestValidator(["12345"], "https://x.example", trust_forwarded_headers=False)
    with pytest.raises(BadSignature, match="missing X-Twilio-Signature"):
        primary.verify(DOC_URL, DOC_PARAMS, None)
    with pytest.raises(BadSignature, match="missing"):
        primary.verify(DOC_URL, DOC_PARAMS, "")
    with pytest.raises(BadSignature):
        primary.verify(DOC_URL, DOC_PARAMS, "not base64 at all ✓")
    other = TwilioRequestValidator(["54321"], "https://x.example", trust_forwarded_headers=False)
    with pytest.raises(BadSignature):
        other.verify(DOC_URL, DOC_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    rotating = TwilioRequestValidator(["54321", "12345"], "https://x.example", trust_forwarded_headers=False)
    rotating.verify(DOC_URL, DOC_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


@given(st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=8), st.randoms())
def test_the_signature_does_not_depend_on_parameter_order(params: list[tuple[str, str]], rnd: random.Random) -> None:
    shuffled = list(params)
    rnd.shuffle(shuffled)
    assert compute_signature(b"k", "https://a/b", params) == compute_signature(b"k", "https://a/b", shuffled)


# ---------------------------------------------------------------- form bodies


def test_form_decoding() -> None:
    body = "From=%2B8613800138000&CallerName=Zhang+Wei&FromCity=%E5%8C%97%E4%BA%AC&Empty=&CallSid=CA1"
    assert parse_form(body) == [
        ("From", "+8613800138000"),
        ("CallerName", "Zhang Wei"),
        ("FromCity", "北京"),
        ("Empty", ""),
        ("CallSid", "CA1"),
    ]
    assert parse_form("") == []


@given(st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=20))
def test_form_bodies_round_trip(pairs: list[tuple[str, str]]) -> None:
    assert parse_form(urlencode(pairs)) == pairs  # NUL too: the contact event, not the form parser, stores it safely


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("CallSid=CA%ZZ", "invalid percent-encoding at character 10"),
        ("CallSid=CA%4", "invalid percent-encoding"),
        ("CallSid=%", "invalid percent-encoding"),
        ("CallerName=%FF%FE", "not valid UTF-8"),
        ("&".join(f"f{i}=1" for i in range(300)), "more than 256 form fields"),
    ],
)
def test_broken_form_bodies(body: str, problem: str) -> None:
    with pytest.raises(MalformedBody, match=problem):
        parse_form(body)


# ---------------------------------------------------------------- callers

SID = "CA" + "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("raw", "region", "platform_id", "kind"),
    [
        ("+8613800138000", None, "+8613800138000", "number"),
        ("+86 138-0013-8000", None, "+8613800138000", "number"),
        ("13800138000", "CN", "+8613800138000", "number"),
        ("010 6552 9988", "CN", "+861065529988", "number"),
        ("+14155550100", "CN", "+14155550100", "number"),
        # Twilio's placeholders for withheld caller ids (keypad spellings) — +86282452253 looks Chinese
        ("+266696687", "CN", f"anonymous:{SID}", "withheld"),
        ("+7378742833", "CN", f"anonymous:{SID}", "withheld"),
        ("+2562533", "CN", f"anonymous:{SID}", "withheld"),
        ("+8656696", "CN", f"anonymous:{SID}", "withheld"),
        ("+86282452253", "CN", f"anonymous:{SID}", "withheld"),
        ("anonymous", None, f"anonymous:{SID}", "withheld"),
        ("Restricted", None, f"anonymous:{SID}", "withheld"),
        ("", None, f"anonymous:{SID}", "withheld"),
        ("client:Anonymous", None, f"anonymous:{SID}", "withheld"),
        ("client:alice", None, "client:alice", "client"),
        ("sip:alice@example.com;transport=tls", None, "sip:alice@example.com", "sip"),
        ("+12", None, f"anonymous:{SID}", "unparseable"),
        ("not a number", "CN", f"anonymous:{SID}", "unparseable"),
        ("12345", None, f"anonymous:{SID}", "unparseable"),
    ],
)
def test_caller_identification(raw: str, region: str | None, platform_id: str, kind: str) -> None:
    caller = identify_caller(raw, SID, region)
    assert (caller.platform_id, caller.kind) == (platform_id, kind)


# ---------------------------------------------------------------- normalization

LINE = PhoneLine.model_validate(
    {
        "id": "hotline",
        "name": "Hotline",
        "auth_token": "fake-token",
        "public_url": "https://kefu.example.com/",
        "numbers": ["+86 21 6000 0000"],
    }
)
CALL = {
    "AccountSid": "AC" + "f" * 32,
    "CallSid": SID,
    "CallStatus": "ringing",
    "Direction": "inbound",
    "From": "+8613800138000",
    "To": "+862160000000",
    "Caller": "+8613800138000",
    "CallerName": "张伟",
    "FromCity": "SHANGHAI",
    "FromCountry": "CN",
    "ForwardedFrom": "021 6000 0001",
    "ApiVersion": "2010-04-01",
}
RECEIVED = datetime(2026, 11, 22, 9, 30, 1, tzinfo=UTC)


def test_the_line_configuration() -> None:
    assert LINE.public_url == "https://kefu.example.com"
    assert LINE.numbers == ("+862160000000",)
    assert LINE.region == "CN"
    assert LINE.queue == "hotline"
    assert "fake-token" not in repr(LINE)
    for bad in (
        {"public_url": "kefu.example.com"},
        {"public_url": "https://kefu.example.com/?x=1"},
        {"numbers": ["6000 0000"]},
        {"default_region": "XX"},
        {"wait_url": "javascript:alert(1)"},
        {"queue_name": "q" * 65},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError):
            PhoneLine.model_validate({**LINE.model_dump(), "auth_token": "t", **bad})


def test_an_incoming_call_becomes_a_message_on_the_call_conversation() -> None:
    event = incoming_call("hotline", "CN", TwilioCall.model_validate(CALL), RECEIVED)
    assert event.kind is ContactEventKind.MESSAGE
    assert event.channel is Channel.PHONE
    assert event.account_id == "hotline"
    assert event.conversation_key == f"phone:hotline:{SID}"
    assert event.dedup_key == f"{SID}:ringing"
    assert event.event_id == event_id(Channel.PHONE, "hotline", f"{SID}:ringing")
    assert event.customer.platform_id == "+8613800138000"
    assert event.customer.display_name == "张伟"
    assert event.message.text == "incoming call"
    assert event.occurred_at == event.received_at == RECEIVED
    assert event.metadata == {
        "call_sid": SID,
        "call_status": "ringing",
        "direction": "inbound",
        "caller_id": "number",
        "account_sid": "AC" + "f" * 32,
        "to": "+862160000000",
        "caller_city": "SHANGHAI",
        "caller_country": "CN",
        "forwarded_from": "+862160000001",
    }


def test_an_ended_call_is_an_abandonment_on_the_same_conversation() -> None:
    status = {**CALL, "CallStatus": "no-answer", "CallDuration": "0", "Timestamp": "Sun, 22 Nov 2026 09:31:10 +0000"}
    event = ended_call("hotline", "CN", TwilioCall.model_validate(status), RECEIVED)
    first = incoming_call("hotline", "CN", TwilioCall.model_validate(CALL), RECEIVED)
    assert event.kind is ContactEventKind.ABANDONED
    assert event.conversation_key == first.conversation_key
    assert event.dedup_key == f"{SID}:no-answer"
    assert event.event_id != first.event_id
    assert event.message.text == "call no-answer"
    assert event.occurred_at == datetime(2026, 11, 22, 9, 31, 10, tzinfo=UTC)
    assert event.metadata["call_duration"] == "0"
    unreadable = TwilioCall.model_validate({**status, "Timestamp": "yesterday"})
    assert ended_call("hotline", "CN", unreadable, RECEIVED).occurred_at == RECEIVED


def test_outbound_calls_identify_the_customer_by_to() -> None:
    call = TwilioCall.model_validate(
        {**CALL, "Direction": "outbound-api", "From": "+862160000000", "To": "13900139000"}
    )
    assert call.line_address == "+862160000000"
    assert incoming_call("hotline", "CN", call, RECEIVED).customer.platform_id == "+8613900139000"


def test_an_unparseable_caller_keeps_the_raw_value_in_metadata() -> None:
    call = TwilioCall.model_validate({**CALL, "From": "+12", "CallerName": "  "})
    event = incoming_call("hotline", "CN", call, RECEIVED)
    assert event.customer.platform_id == f"anonymous:{SID}"
    assert event.customer.display_name is None
    assert event.metadata["caller_id"] == "unparseable"
    assert event.metadata["caller_raw"] == "+12"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"CallSid": None}, "CallSid"),
        ({"CallSid": "CA123"}, "CallSid"),
        ({"CallStatus": None}, "CallStatus"),
        ({"CallStatus": "exploded"}, "CallStatus"),
    ],
)
def test_webhooks_without_a_usable_call(change: dict[str, str | None], field: str) -> None:
    params = {k: v for k, v in {**CALL, **change}.items() if v is not None}
    with pytest.raises(ValidationError) as caught:
        TwilioCall.model_validate(params)
    assert caught.value.errors()[0]["loc"] == (field,)


def test_every_twilio_status_is_known() -> None:
    assert {s.value for s in CallStatus} == {
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "no-answer",
        "canceled",
        "failed",
    }


# ---------------------------------------------------------------- TwiML


def test_the_twiml_is_well_formed_and_escapes_everything() -> None:
    line = LINE.model_copy(
        update={
            "greeting": '您好 <Hangup/> & "welcome" </Say><Reject/>',
            "greeting_voice": "Polly.Zhiyu",
            "queue_name": "售后 <&> queue",
            "wait_url": 'https://twimlets.com/holdmusic?Bucket=com.twilio.music.classical&Message=x"><Reject/>',
        }
    )
    twiml = enqueue_twiml(line)
    assert twiml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = SafeET.fromstring(twiml)
    assert root.tag == "Response"
    say, enqueue = list(root)
    assert (say.tag, say.text, say.attrib) == (
        "Say",
        '您好 <Hangup/> & "welcome" </Say><Reject/>',
        {"language": "zh-CN", "voice": "Polly.Zhiyu"},
    )
    assert (enqueue.tag, enqueue.text) == ("Enqueue", "售后 <&> queue")
    assert enqueue.attrib == {
        "waitUrl": 'https://twimlets.com/holdmusic?Bucket=com.twilio.music.classical&Message=x"><Reject/>'
    }
    assert b"<Hangup" not in twiml and b"<Reject" not in twiml


def test_the_plainest_twiml_just_queues() -> None:
    root = SafeET.fromstring(enqueue_twiml(LINE))
    assert [(e.tag, e.text, e.attrib) for e in root] == [("Enqueue", "hotline", {})]
