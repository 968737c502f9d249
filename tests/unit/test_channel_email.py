"""Email: MIME parsing (charsets, transfer encodings, limits), threading, quote stripping, HTML to
text, form parsing, Basic auth and Mailgun signatures, and normalization to a contact event."""

import base64
import contextlib
import hashlib
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import Channel
from services.channels.common.ids import event_id
from services.channels.email.auth import HeaderAuth, MailgunVerifier, mailgun_signature
from services.channels.email.forms import parse_multipart, parse_urlencoded
from services.channels.email.headers import (
    decode_text,
    decode_words,
    header_text,
    message_ids,
    normalize_message_id,
    plus_token,
)
from services.channels.email.inbox import AttachmentTooLarge, EmailInbox, MimeLimits, MimeTooComplex
from services.channels.email.mime import FilePart, parse_mime
from services.channels.email.posts import mailgun_facts, sendgrid_facts
from services.channels.email.text import html_to_text, strip_quoted
from services.channels.email.threads import to_contact_event
from services.channels.exceptions import BadSignature, MalformedBody, Unauthorized, WebhookRejected

LIMITS = MimeLimits()
RECEIVED = datetime(2026, 11, 22, 9, 30, 1, tzinfo=UTC)
INBOX = EmailInbox.model_validate(
    {"id": "support", "name": "Support", "address": "Support@Shop.Example.com", "provider": "raw", "bearer_token": "t"}
)


def b64(text: str, charset: str) -> str:
    return base64.b64encode(text.encode(charset)).decode()


def message(*headers: str, body: bytes = b"", content_type: str = "text/plain; charset=utf-8", cte: str = "") -> bytes:
    head = [*headers, "MIME-Version: 1.0", f"Content-Type: {content_type}"]
    if cte:
        head.append(f"Content-Transfer-Encoding: {cte}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


FROM = "From: Zhang Wei <Zhang.Wei@Example.COM>"


# --- charsets and transfer encodings ---------------------------------------------------------------


def test_a_gbk_message_in_base64_with_encoded_word_headers() -> None:
    raw = message(
        f"From: =?GBK?B?{b64('张伟', 'gbk')}?= <zhang@example.com>",
        f"Subject: =?GB2312?B?{b64('空调不制冷', 'gbk')}?=",
        "Message-ID: <gbk-1@mail.example.com>",
        body=base64.encodebytes("您好，空调不制冷了。".encode("gbk")),
        content_type="text/plain; charset=GBK",
        cte="base64",
    )
    facts = parse_mime(raw, LIMITS)
    assert facts.sender == ("张伟", "zhang@example.com")
    assert facts.subject == "空调不制冷"
    assert facts.text == "您好，空调不制冷了。"


def test_gb2312_labelled_text_with_gbk_only_characters_decodes_through_gb18030() -> None:
    # 镕 is in GBK, not in GB2312; Chinese clients label such text gb2312 all the time
    raw = message(FROM, body="朱镕基".encode("gbk"), content_type="text/plain; charset=gb2312", cte="8bit")
    assert parse_mime(raw, LIMITS).text == "朱镕基"
    assert header_text(f"=?gb2312?B?{b64('朱镕基', 'gbk')}?=") == "朱镕基"


def test_a_gb18030_message_with_8bit_headers() -> None:
    text = "退货申请：订单 12345 𠀀"  # the last character needs GB18030's four-byte form
    raw = (f"{FROM}\r\nSubject: 退货申请\r\nContent-Type: text/plain; charset=GB18030\r\n\r\n{text}").encode("gb18030")
    facts = parse_mime(raw, LIMITS)
    assert facts.subject == "退货申请"
    assert facts.text == text


def test_quoted_printable_utf8() -> None:
    body = b"Caf=C3=A9 au lait, s'il vous pla=C3=AEt =E2=98=95\r\nsoft=\r\n break"
    raw = message(FROM, body=body, cte="quoted-printable")
    assert parse_mime(raw, LIMITS).text == "Café au lait, s'il vous plaît ☕\nsoft break"


def test_base64_utf8() -> None:
    raw = message(FROM, body=base64.encodebytes("你好 world ✓".encode()), cte="base64")
    assert parse_mime(raw, LIMITS).text == "你好 world ✓"


@pytest.mark.parametrize("charset", ["x-no-such-charset", "base64", "rot13", '"utf-8', "", "utf-8*en"])
def test_unknown_or_hostile_charset_names_fall_back_without_failing(charset: str) -> None:
    raw = message(FROM, body="é 你好".encode(), content_type=f"text/plain; charset={charset}", cte="8bit")
    assert parse_mime(raw, LIMITS).text == "é 你好"


def test_undeclared_8bit_text_tries_utf8_then_gb18030() -> None:
    assert decode_text("你好".encode(), None) == "你好"
    assert decode_text("你好".encode("gbk"), None) == "你好"
    assert decode_text("你好".encode("gbk"), "us-ascii") == "你好"
    assert decode_text(b"caf\xe9", "iso-8859-1") == "café"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.text(max_size=20))
def test_decoding_never_fails(data: bytes, charset: str) -> None:
    assert isinstance(decode_text(data, charset), str)


# RFC 2047 section 8: the published examples of encoded words and the white space between them
@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("=?US-ASCII?Q?Keith_Moore?=", "Keith Moore"),
        ("=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", "Keld Jørn Simonsen"),
        ("=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"),
        (
            "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n"
            " =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
            "If you can read this you understand the example.",
        ),
        ("(=?ISO-8859-1?Q?a?=)", "(a)"),
        ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
        ("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
        ("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"),
        ("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"),
        ("(=?ISO-8859-1?Q?a_b?=)", "(a b)"),
        ("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"),
    ],
)
def test_rfc2047_examples(encoded: str, decoded: str) -> None:
    assert header_text(encoded) == decoded


def test_a_character_split_across_two_encoded_words_survives() -> None:
    data = "张伟".encode("gbk")
    split = f"=?GBK?B?{base64.b64encode(data[:3]).decode()}?= =?GBK?B?{base64.b64encode(data[3:]).decode()}?="
    assert decode_words(split) == "张伟"


def test_broken_encoded_words_are_left_alone() -> None:
    assert decode_words("=?utf-8?b?#?= ok") == "=?utf-8?b?#?= ok"


# --- threading -----------------------------------------------------------------------------------


def test_message_ids_lose_brackets_and_get_a_lower_case_domain() -> None:
    assert normalize_message_id(" <CAF+x.Y@Mail.Gmail.COM> ") == "CAF+x.Y@mail.gmail.com"
    assert message_ids("<a@B.com>\r\n <c@D.com> <e@F.com>") == ["a@b.com", "c@d.com", "e@f.com"]
    assert message_ids("bare@Example.COM") == ["bare@example.com"]
    assert message_ids(None) == []


def _threaded(*headers: str) -> str:
    raw = message(FROM, *headers, body=b"hi")
    return to_contact_event(INBOX, parse_mime(raw, LIMITS), RECEIVED).conversation_key


def test_the_conversation_is_the_thread_root() -> None:
    own = "Message-ID: <reply-2@Client.Example>"
    references = "References: <Root@X.COM> <r1@X.com>"
    assert _threaded(own, "In-Reply-To: <r1@X.com>", references) == "email:support:Root@x.com"
    assert _threaded(own, "In-Reply-To: <R1@X.COM>") == "email:support:R1@x.com"
    assert _threaded(own) == "email:support:reply-2@client.example"


def test_a_plus_address_token_names_the_conversation_and_wins() -> None:
    key = _threaded("To: Shop <SUPPORT+Case-42@shop.example.com>", "References: <root@x.com>")
    assert key == "email:support:case-42"
    assert plus_token(["other+x@shop.example.com", "support+y@elsewhere.com"], "support@shop.example.com") is None
    assert plus_token(["support+bad token@shop.example.com"], "support@shop.example.com") is None


def test_a_reply_joins_the_conversation_of_the_first_message() -> None:
    first = _threaded("Message-ID: <Q1@Shop.Example>")
    reply = _threaded("Message-ID: <a2@client>", "In-Reply-To: <Q1@shop.example>", "References: <Q1@shop.example>")
    assert first == reply


def test_without_message_id_the_dedup_key_hashes_the_raw_message() -> None:
    raw = message(FROM, body=b"no id")
    event = to_contact_event(INBOX, parse_mime(raw, LIMITS), RECEIVED)
    assert event.dedup_key == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert event.conversation_key == f"email:support:{event.dedup_key}"
    again = to_contact_event(INBOX, parse_mime(raw, LIMITS), RECEIVED + timedelta(minutes=5))
    assert again.event_id == event.event_id
    other = to_contact_event(INBOX, parse_mime(raw + b"!", LIMITS), RECEIVED)
    assert other.event_id != event.event_id


def test_very_long_message_ids_are_hashed_to_fit_the_keys() -> None:
    long_id = "x" * 600 + "@example.com"
    event = to_contact_event(INBOX, parse_mime(message(FROM, f"Message-ID: <{long_id}>"), LIMITS), RECEIVED)
    assert event.dedup_key == "sha256:" + hashlib.sha256(long_id.encode()).hexdigest()


# --- normalization -------------------------------------------------------------------------------


def test_normalization_keeps_what_routing_and_agents_need() -> None:
    raw = message(
        "From: =?utf-8?q?=E5=BC=A0=E4=BC=9F?= <Zhang.Wei@Example.COM>",
        "To: support@shop.example.com",
        "Reply-To: zw@work.example.com",
        "Subject: Order 12345",
        "Message-ID: <m1@Example.COM>",
        "Date: Sun, 22 Nov 2026 17:30:00 +0800",
        body=b"My order has not arrived.",
    )
    event = to_contact_event(INBOX, parse_mime(raw, LIMITS), RECEIVED)
    assert event.channel is Channel.EMAIL
    assert event.account_id == "support"
    assert event.event_id == event_id(Channel.EMAIL, "support", "m1@example.com")
    assert event.dedup_key == "m1@example.com"
    assert event.conversation_key == "email:support:m1@example.com"
    assert event.customer.platform_id == "zhang.wei@example.com"
    assert event.customer.display_name == "张伟"
    assert event.message.text == "My order has not arrived."
    assert event.occurred_at == datetime(2026, 11, 22, 17, 30, tzinfo=timezone(timedelta(hours=8)))
    assert event.received_at == RECEIVED
    assert event.metadata == {
        "subject": "Order 12345",
        "provider": "raw",
        "message_id": "m1@example.com",
        "reply_to": "zw@work.example.com",
    }


def test_a_missing_or_invalid_date_means_the_time_of_receipt() -> None:
    for date in ("Date: yesterday", "Date: Sun, 22 Nov 2026 17:30:00 -0000"):
        event = to_contact_event(INBOX, parse_mime(message(FROM, date), LIMITS), RECEIVED)
        assert event.occurred_at.tzinfo is not None
    assert to_contact_event(INBOX, parse_mime(message(FROM), LIMITS), RECEIVED).occurred_at == RECEIVED


def test_an_email_without_a_sender_is_invalid() -> None:
    with pytest.raises(WebhookRejected) as caught:
        to_contact_event(INBOX, parse_mime(message("From: not an address"), LIMITS), RECEIVED)
    assert caught.value.status == 422


def test_long_text_is_cut_and_marked() -> None:
    event = to_contact_event(INBOX, parse_mime(message(FROM, body=b"a" * 70000), LIMITS), RECEIVED)
    assert len(event.message.text) == 65536
    assert event.metadata["truncated"] == "true"


# --- MIME structure, attachments, limits ---------------------------------------------------------


def multipart(parts: list[bytes], boundary: str = "b1", subtype: str = "mixed") -> tuple[str, bytes]:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts) + f"--{boundary}--\r\n".encode()
    return f'multipart/{subtype}; boundary="{boundary}"', body


def test_attachments_are_described_not_kept_and_the_plain_body_wins_over_html() -> None:
    pdf = b"%PDF-1.4 fake"
    alternative_type, alternative = multipart(
        [
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease see the invoice.",
            b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Please see the <b>invoice</b>.</p>",
        ],
        boundary="alt",
        subtype="alternative",
    )
    content_type, body = multipart(
        [
            f"Content-Type: {alternative_type}\r\n\r\n".encode() + alternative,
            b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''%E5%8F%91%E7%A5%A8.pdf"
            b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(pdf),
            b'Content-Type: image/png; name="C:\\\\Users\\\\me\\\\logo.png"\r\nContent-ID: <logo>\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=",
            b"Content-Type: message/rfc822\r\n\r\nFrom: a@b.c\r\nSubject: Earlier mail\r\n\r\nolder",
        ]
    )
    facts = parse_mime(message(FROM, body=body, content_type=content_type), LIMITS)
    assert facts.text == "Please see the invoice."
    invoice, logo, forwarded = facts.attachments
    assert (invoice.name, invoice.content_type, invoice.size) == ("发票.pdf", "application/pdf", len(pdf))
    assert invoice.sha256 == hashlib.sha256(pdf).hexdigest()
    assert invoice.url is None
    assert (logo.name, logo.content_type, logo.size) == ("logo.png", "image/png", 8)
    assert (forwarded.name, forwarded.content_type) == ("Earlier mail.eml", "message/rfc822")
    assert forwarded.size and forwarded.sha256


def test_an_html_only_body_is_reduced_to_text() -> None:
    html = (
        "<html><head><style>p {color: red}</style><script>alert(1)</script></head><body>"
        "<p>您好，\n   订单 <b>12345</b> 还没到。</p><div>谢谢<br>张伟</div>"
        '<div class="gmail_quote">在 2026年11月21日 写道：<blockquote>旧邮件</blockquote></div></body></html>'
    )
    raw = message(FROM, body=html.encode(), content_type="text/html; charset=utf-8")
    assert parse_mime(raw, LIMITS).text == "您好， 订单 12345 还没到。\n\n谢谢\n张伟"


def test_html_to_text_never_warns_on_odd_input() -> None:
    assert html_to_text("https://example.com/x") == "https://example.com/x"
    assert html_to_text("invoice.html") == "invoice.html"
    assert html_to_text('<?xml version="1.0"?><note>hi</note>') == "hi"
    assert html_to_text("a &amp; b") == "a & b"


def nested(depth: int) -> bytes:
    head = b""
    tail = b""
    for level in range(depth):
        head += f"Content-Type: multipart/mixed; boundary=n{level}\r\n\r\n--n{level}\r\n".encode()
        tail = f"\r\n--n{level}--\r\n".encode() + tail
    return f"{FROM}\r\nMIME-Version: 1.0\r\n".encode() + head + b"Content-Type: text/plain\r\n\r\ndeep" + tail


def test_nesting_up_to_the_limit_is_fine_and_deeper_is_a_mime_bomb() -> None:
    assert parse_mime(nested(10), LIMITS).text == "deep"
    with pytest.raises(MimeTooComplex) as caught:
        parse_mime(nested(11), LIMITS)
    assert caught.value.status == 400


def test_thousands_of_nested_levels_are_refused_quickly() -> None:
    started = time.process_time()  # the CPU it costs, not the wait for a core on a loaded machine
    with pytest.raises(MimeTooComplex):
        parse_mime(nested(5000), LIMITS)
    assert time.process_time() - started < 5.0  # a bomb is refused early, not after building it (generous bound)


def test_too_many_parts_are_refused_before_they_are_all_built() -> None:
    content_type, body = multipart([b"Content-Type: text/plain\r\n\r\nx"] * 99)
    assert len(parse_mime(message(FROM, body=body, content_type=content_type), LIMITS).attachments) == 0
    content_type, body = multipart([b"Content-Type: application/octet-stream\r\n\r\nx"] * 50_000)
    started = time.process_time()  # the CPU it costs, not the wait for a core on a loaded machine
    with pytest.raises(MimeTooComplex, match="more than 100 MIME parts"):
        parse_mime(message(FROM, body=body, content_type=content_type), LIMITS)
    assert time.process_time() - started < 5.0  # a bomb is refused early, not after building it (generous bound)


def test_an_attachment_over_the_limit_is_413() -> None:
    content_type, body = multipart(
        [
            b"Content-Type: text/plain\r\n\r\nsee attached",
            b"Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(b"\0" * 2048),
        ]
    )
    raw = message(FROM, body=body, content_type=content_type)
    assert parse_mime(raw, MimeLimits(max_attachment_bytes=2048)).attachments[0].size == 2048
    with pytest.raises(AttachmentTooLarge) as caught:
        parse_mime(raw, MimeLimits(max_attachment_bytes=2047))
    assert caught.value.status == 413


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_the_parser(data: bytes) -> None:
    with contextlib.suppress(WebhookRejected):
        parse_mime(b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" + data, LIMITS)


# --- quoted history ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "new"),
    [
        ("Thanks!\n\nOn Mon, Jan 5, 2026 at 10:00 AM Shop <s@shop.com> wrote:\n> Your order shipped.\n", "Thanks!"),
        ("Thanks!\nOn Mon, Jan 5, 2026 at 10:00 AM Shop Support <\nsupport@shop.com> wrote:\n> old", "Thanks!"),
        ("收到，谢谢！\n\n在 2026年1月5日 周一 10:00，客服 <s@shop.com> 写道：\n> 已发货", "收到，谢谢！"),
        ("好的\n\n------------------ 原始邮件 ------------------\n发件人: 客服\n发送时间: 2026\n旧", "好的"),
        ("好的\n\n-----原始邮件-----\n旧内容", "好的"),
        ("好的\n\n发件人：客服 <s@shop.com>\n发送时间：2026年1月5日 10:00\n收件人：我\n主题：回复\n\n旧内容", "好的"),
        ("OK\n\n-----Original Message-----\nFrom: Shop\nold", "OK"),
        ("OK\n\n________________________________\nFrom: Shop <s@shop.com>\nSent: Monday\nTo: me\n\nold", "OK"),
        ("OK\n\nFrom: Shop <s@shop.com>\nDate: Monday\nSubject: Re: order\n\nold", "OK"),
        ("Inline.\n\nOn 5 Jan 2026, Shop wrote:\n> Size?\nXL\n> Colour?\nBlue\n", "Inline.\n\nXL\nBlue"),
        ("> only\n> quoted", "> only\n> quoted"),
        ("On Monday I bought 2.\nThe seller wrote: no", "On Monday I bought 2.\nThe seller wrote: no"),
        ("From: my phone\nthe screen broke", "From: my phone\nthe screen broke"),
    ],
)
def test_quoted_history_is_stripped(text: str, new: str) -> None:
    assert strip_quoted(text) == new


@given(st.text(max_size=300))
def test_stripping_never_fails(text: str) -> None:
    assert isinstance(strip_quoted(text), str)


# --- forms -----------------------------------------------------------------------------------------


def form(parts: list[tuple[str, bytes, str | None, str | None]], boundary: str = "----kefu7MA4YWxk") -> bytes:
    out = b""
    for name, value, filename, content_type in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


CT = "multipart/form-data; boundary=----kefu7MA4YWxk"


def test_multipart_fields_are_kept_and_files_only_hashed() -> None:
    body = form([("From", b"a@b.c", None, None), ("attachment1", b"\x89PNG", "p.png", "image/png")])
    parsed = parse_multipart(body, CT, max_parts=10, max_file_bytes=100)
    assert parsed.fields == {"from": b"a@b.c"}
    assert parsed.files == [FilePart("attachment1", "p.png", "image/png", 4, hashlib.sha256(b"\x89PNG").hexdigest())]


def test_a_kept_field_is_kept_even_when_posted_as_a_file() -> None:
    body = form([("email", b"From: a@b.c\r\n\r\nhi", "msg.eml", "message/rfc822")])
    parsed = parse_multipart(body, CT, max_parts=10, max_file_bytes=5, keep=frozenset({"email"}))
    assert parsed.fields["email"].endswith(b"hi")
    assert parsed.files == []


@pytest.mark.parametrize(
    ("content_type", "body", "error", "status"),
    [
        ("multipart/form-data", form([("a", b"1", None, None)]), MalformedBody, 400),
        (CT, form([("a", b"1", None, None)])[:-25], MalformedBody, 400),
        (CT, b"not multipart at all", MalformedBody, 400),
        (CT, form([(f"f{i}", b"1", None, None) for i in range(80)]), MimeTooComplex, 400),
        (CT, form([("attachment1", b"x" * 101, "big.bin", None)]), AttachmentTooLarge, 413),
    ],
    ids=["no boundary", "truncated", "garbage", "too many parts", "file too large"],
)
def test_bad_multipart_bodies(content_type: str, body: bytes, error: type[WebhookRejected], status: int) -> None:
    with pytest.raises(error) as caught:
        parse_multipart(body, content_type, max_parts=10, max_file_bytes=100)
    assert caught.value.status == status


def test_urlencoded_fields_are_percent_decoded_bytes() -> None:
    parsed = parse_urlencoded(b"Subject=%E4%BD%A0%E5%A5%BD+x&body-plain=&token=abc", max_fields=10)
    assert parsed.fields == {"subject": "你好 x".encode(), "body-plain": b"", "token": b"abc"}
    with pytest.raises(MimeTooComplex):
        parse_urlencoded(b"&".join(b"f%d=1" % i for i in range(100)), max_fields=10)


def test_sendgrid_parsed_fields_use_their_charsets() -> None:
    headers = (
        b"Message-ID: <sg-1@Client.Example>\r\nIn-Reply-To: <q1@shop.example.com>\r\n"
        b"Date: Sun, 22 Nov 2026 17:30:00 +0800\r\n"
    )
    fields = {
        "headers": headers,
        "from": "张伟 <zhang@example.com>".encode(),
        "to": b"support@shop.example.com",
        "subject": "退货".encode("gbk"),
        "text": "我要退货\n\n> 旧邮件".encode("gbk"),
        "html": b"",
        "charsets": b'{"subject": "GB2312", "text": "GBK", "from": "UTF-8", "to": "UTF-8"}',
        "envelope": b'{"to": ["support+case-7@shop.example.com"], "from": "bounce@example.com"}',
        "attachment-info": '{"attachment1": {"filename": "发票.pdf", "type": "application/pdf"}}'.encode(),
    }
    files = [FilePart("attachment1", "x.pdf", "application/octet-stream", 10, "0" * 64)]
    facts = sendgrid_facts(fields, files, LIMITS)
    event = to_contact_event(INBOX, facts, RECEIVED)
    assert event.customer.platform_id == "zhang@example.com"
    assert event.metadata["subject"] == "退货"
    assert event.message.text == "我要退货"
    assert event.dedup_key == "sg-1@client.example"
    assert event.conversation_key == "email:support:case-7"
    assert event.message.attachments[0].name == "发票.pdf"
    assert event.message.attachments[0].content_type == "application/pdf"


def test_sendgrid_raw_mode_parses_the_email_field() -> None:
    raw = message(FROM, "Message-ID: <raw-1@x.com>", body=b"raw body")
    facts = sendgrid_facts({"email": raw, "envelope": b"not json"}, [], LIMITS)
    assert facts.text == "raw body"
    assert facts.message_id == "raw-1@x.com"


def test_mailgun_fields_prefer_stripped_text() -> None:
    fields = {
        "from": b"Zhang Wei <Zhang@Example.com>",
        "recipient": b"support@shop.example.com",
        "subject": b"Order",
        "body-plain": b"Where is it?\n\n> old",
        "stripped-text": b"Where is it?",
        "message-id": b"<MG-1@Example.com>",
        "message-headers": b'[["References", "<root@shop.example.com>"], ["Date", "Sun, 22 Nov 2026 09:30:00 +0000"]]',
    }
    event = to_contact_event(INBOX, mailgun_facts(fields, [], LIMITS), RECEIVED)
    assert event.message.text == "Where is it?"
    assert event.dedup_key == "MG-1@example.com"
    assert event.conversation_key == "email:support:root@shop.example.com"
    assert event.occurred_at == datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


# --- credentials and signatures --------------------------------------------------------------------


def test_basic_auth_rfc7617_example() -> None:
    auth = HeaderAuth(basic=("Aladdin", "open sesame"))
    auth.check("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    for bad in (None, "", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZg==", "Basic !!!", "Bearer open sesame", "Digest x"):
        with pytest.raises(Unauthorized) as caught:
            auth.check(bad)
        assert caught.value.status == 401
        assert "open sesame" not in caught.value.detail


def test_bearer_tokens() -> None:
    auth = HeaderAuth(bearer="s3cret-token")
    auth.check("Bearer s3cret-token")
    with pytest.raises(Unauthorized):
        auth.check("Bearer s3cret-tokeN")


# computed independently: printf %s "$timestamp$token" | openssl dgst -sha256 -hmac "$key"
MAILGUN_KEY = "key-not-a-real-mailgun-signing-key-0001"
MAILGUN_TIMESTAMP = "1770920772"
MAILGUN_TOKEN = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"
MAILGUN_SIGNATURE = "b9ac3a14bdfcef58757171fb2466f9a9846fb90a00750a9d90822a5087e241ef"


def test_mailgun_signature_known_answer() -> None:
    assert mailgun_signature(MAILGUN_KEY, MAILGUN_TIMESTAMP, MAILGUN_TOKEN) == MAILGUN_SIGNATURE
    verifier = MailgunVerifier(MAILGUN_KEY, tolerance_seconds=300)
    now = int(MAILGUN_TIMESTAMP) + 299
    assert verifier.verify(MAILGUN_TIMESTAMP, MAILGUN_TOKEN, MAILGUN_SIGNATURE.upper(), now=now) == MAILGUN_TOKEN


@pytest.mark.parametrize(
    ("timestamp", "token", "signature", "now_offset", "problem"),
    [
        (MAILGUN_TIMESTAMP, MAILGUN_TOKEN, None, 0, "missing Mailgun signature field(s): signature"),
        (MAILGUN_TIMESTAMP, MAILGUN_TOKEN, "0" * 64, 0, "signature does not match"),
        (MAILGUN_TIMESTAMP, MAILGUN_TOKEN + "x", MAILGUN_SIGNATURE, 0, "signature does not match"),
        (MAILGUN_TIMESTAMP, MAILGUN_TOKEN, "zz", 0, "signature is not 64 hex digits"),
        ("17709207.2", MAILGUN_TOKEN, MAILGUN_SIGNATURE, 0, "timestamp is not a Unix time in seconds"),
        (MAILGUN_TIMESTAMP, MAILGUN_TOKEN, MAILGUN_SIGNATURE, 301, "more than 300 seconds in the past"),
        (MAILGUN_TIMESTAMP, MAILGUN_TOKEN, MAILGUN_SIGNATURE, -301, "more than 300 seconds in the future"),
    ],
)
def test_mailgun_signature_refusals(
    timestamp: str, token: str, signature: str | None, now_offset: int, problem: str
) -> None:
    verifier = MailgunVerifier(MAILGUN_KEY, tolerance_seconds=300)
    with pytest.raises(BadSignature, match=problem.replace("(", r"\(").replace(")", r"\)")):
        verifier.verify(timestamp, token, signature, now=int(MAILGUN_TIMESTAMP) + now_offset)


# --- configuration ---------------------------------------------------------------------------------


def test_each_provider_needs_its_credentials_and_secrets_stay_hidden() -> None:
    base = {"id": "s", "name": "S", "address": "s@x.com"}
    with pytest.raises(ValidationError, match="basic_auth"):
        EmailInbox.model_validate({**base, "provider": "sendgrid"})
    with pytest.raises(ValidationError, match="mailgun_signing_key"):
        EmailInbox.model_validate({**base, "provider": "mailgun"})
    with pytest.raises(ValidationError, match="basic_auth or bearer_token"):
        EmailInbox.model_validate({**base, "provider": "raw"})
    with pytest.raises(ValidationError, match="only for raw"):
        EmailInbox.model_validate({**base, "provider": "mailgun", "mailgun_signing_key": "k", "bearer_token": "t"})
    inbox = EmailInbox.model_validate(
        {**base, "provider": "sendgrid", "basic_auth": {"username": "sg", "password": "hunter2-fake"}}
    )
    assert "hunter2-fake" not in repr(inbox)
    assert inbox.address == "s@x.com"
