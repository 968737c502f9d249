"""Email: inboxes that receive mail through SendGrid Inbound Parse, Mailgun routes or raw RFC 5322
posts, and the normalization of one email to a contact event.

Threading is stateless. The conversation is the thread root: the first Message-ID of
``References``, else ``In-Reply-To``, else the message's own ``Message-ID`` (Message-IDs lose their
``<>`` and their domain part is lower-cased). A plus-address token in a recipient of the inbox's own
address (``support+<token>@example.com``) names the conversation directly and wins. The dedup key is
the Message-ID; a message without one gets ``sha256:<hex>`` of its raw MIME (or, for pre-parsed
posts, of its headers, addresses, subject, bodies and attachment hashes).

MIME is parsed once with the stdlib parser (``email.policy.default``) under a part budget, so a
MIME bomb is refused before it costs much; bodies are decoded with the declared charset (GB2312
and GBK as their superset GB18030), falling back to UTF-8 and GB18030, never failing on an unknown
charset name. HTML-only mail is reduced to text, quoted history is cut, attachments are described
(name, type, size, SHA-256) and never kept.
"""

import base64
import binascii
import codecs
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import errors as email_errors
from email import policy as email_policy
from email.message import EmailMessage
from email.message import Message as MimePart
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from enum import StrEnum
from functools import lru_cache
from html import unescape
from typing import Any, Self

from bs4 import BeautifulSoup
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from contracts import Attachment, Channel, ContactEvent, Customer, Message
from services.channels.common.ids import ACCOUNT_ID, conversation_key, customer_id, event_id
from services.channels.exceptions import BodyTooLarge, InvalidPayload, MalformedBody

MIB = 1024 * 1024
MAX_TEXT = 65536
"""Longest message text the contract carries; longer text is cut and ``metadata["truncated"]`` set."""
MAX_HTML_CHARS = 2 * MIB
"""HTML beyond this many characters is not looked at when reducing an HTML-only body to text."""
MAX_ROOT = 300
"""Thread roots and dedup keys longer than this are replaced by ``sha256:<hex>`` of themselves."""


# --- configuration -------------------------------------------------------------------------------


class EmailProvider(StrEnum):
    """Who posts the inbox's mail, which decides the body shape and how it is authenticated."""

    SENDGRID = "sendgrid"  # Inbound Parse multipart/form-data (parsed or "send raw"); HTTP Basic auth
    MAILGUN = "mailgun"  # route forward, multipart or urlencoded; HMAC signature + replay token
    RAW = "raw"  # message/rfc822 body; HTTP Basic auth or a bearer token


class BasicAuth(BaseModel):
    """HTTP Basic credentials the poster must present (``https://user:password@host/...``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    username: str = Field(min_length=1, max_length=256, pattern=r"^[^:\s]+$")
    password: SecretStr

    @field_validator("password")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value


class EmailInbox(BaseModel):
    """A support mailbox whose mail a provider posts to ``/webhooks/email/{id}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID, description="the inbox id in the webhook URL")
    name: str
    address: str = Field(
        max_length=254,
        pattern=r"^[^@\s<>]+@[^@\s<>]+$",
        description="The inbox's address; ``local+<token>@domain`` recipients name a conversation.",
    )
    provider: EmailProvider
    basic_auth: BasicAuth | None = Field(default=None, description="Required for sendgrid; for raw, or bearer_token.")
    bearer_token: SecretStr | None = Field(default=None, description="raw only: ``Authorization: Bearer <token>``.")
    mailgun_signing_key: SecretStr | None = Field(default=None, description="mailgun: the HTTP webhook signing key.")
    max_body_bytes: int | None = Field(
        default=None, gt=0, description="Largest POST accepted for this inbox; default: the service's max_body_bytes."
    )
    max_attachment_bytes: int = Field(default=10 * MIB, gt=0, description="Largest single attachment.")
    max_parts: int = Field(default=100, ge=1, le=1000, description="Most MIME parts (or form parts) in one email.")
    max_depth: int = Field(default=10, ge=1, le=50, description="Deepest MIME nesting.")

    @field_validator("address")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @model_validator(mode="after")
    def _credentials_fit_provider(self) -> Self:
        if self.provider is EmailProvider.SENDGRID and self.basic_auth is None:
            raise ValueError("a sendgrid inbox needs basic_auth: SendGrid does not sign Inbound Parse posts")
        if self.provider is EmailProvider.MAILGUN and self.mailgun_signing_key is None:
            raise ValueError("a mailgun inbox needs mailgun_signing_key")
        if self.provider is EmailProvider.RAW and self.basic_auth is None and self.bearer_token is None:
            raise ValueError("a raw inbox needs basic_auth or bearer_token")
        if self.provider is not EmailProvider.RAW and self.bearer_token is not None:
            raise ValueError("bearer_token is only for raw inboxes")
        if self.provider is not EmailProvider.MAILGUN and self.mailgun_signing_key is not None:
            raise ValueError("mailgun_signing_key is only for mailgun inboxes")
        return self

    @property
    def limits(self) -> "MimeLimits":
        return MimeLimits(self.max_parts, self.max_depth, self.max_attachment_bytes)


@dataclass(frozen=True, slots=True)
class MimeLimits:
    max_parts: int = 100
    max_depth: int = 10
    max_attachment_bytes: int = 10 * MIB


class MimeTooComplex(MalformedBody):
    """400: more parts or deeper nesting than the inbox allows."""

    code = "mime_too_complex"


class AttachmentTooLarge(BodyTooLarge):
    """413: one attachment is over the inbox's limit."""

    code = "attachment_too_large"


# --- what one email says -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FilePart:
    """An uploaded file of a form post, already hashed; its bytes are not kept."""

    field: str
    filename: str
    content_type: str
    size: int
    sha256: str


@dataclass(slots=True)
class EmailFacts:
    """What normalization needs from one email, whatever shape it was posted in."""

    sender: tuple[str, str] | None  # (display name, lower-cased address)
    subject: str
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    recipients: list[str]
    date: datetime | None
    text: str
    attachments: list[Attachment]
    digest: str  # hex SHA-256 of the raw message, or of the canonical content of a parsed post
    reply_to: str | None = None


# --- charsets and headers ------------------------------------------------------------------------

_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso8859-1": "cp1252",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
}
_NAME_ALIASES = {"x-gbk": "gbk", "cp936": "gbk", "ms936": "gbk", "x-euc-cn": "gb2312", "euc-cn": "gb2312"}


@lru_cache(maxsize=256)
def _codec(charset: str | None) -> str | None:
    """The Python codec for a declared charset (or a superset of it), None if unknown."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").split("*", 1)[0].lower()
    name = _NAME_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return _SUPERSETS.get(info.name, info.name)


def decode_text(data: bytes, charset: str | None) -> str:
    """``data`` as text: the declared charset, else UTF-8, else GB18030; never fails."""
    if data.isascii():
        return data.decode("ascii")
    declared = _codec(charset)
    for name in dict.fromkeys(c for c in (declared, "utf-8", "gb18030") if c):
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode(declared or "utf-8", errors="replace")


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n[ \t]*")


def _word_bytes(encoding: str, payload: str) -> bytes:
    if encoding in "bB":
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    return binascii.a2b_qp(payload.encode("utf-8", "surrogateescape"), header=True)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; adjacent words of one charset are joined before decoding, so a
    character split across two words survives."""
    if "=?" not in value:
        return value
    pieces: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        gap = value[position : match.start()]
        charset, encoding, payload = match.groups()
        try:
            data = _word_bytes(encoding, payload)
        except (binascii.Error, ValueError):
            continue  # leave the word as it is: it becomes part of the next gap
        if not (gap.isspace() and pending) and gap:
            if pending:
                pieces.append(decode_text(bytes(pending), pending_charset))
                pending.clear()
            pieces.append(gap)
        if pending and charset.lower() != pending_charset:
            pieces.append(decode_text(bytes(pending), pending_charset))
            pending.clear()
        pending_charset = charset.lower()
        pending += data
        position = match.end()
    if pending:
        pieces.append(decode_text(bytes(pending), pending_charset))
    pieces.append(value[position:])
    return "".join(pieces)


def raw_header(value: str) -> str:
    """A header value as the parser keeps it (8-bit bytes as surrogates, folded) made real text."""
    if not value.isascii():
        value = decode_text(value.encode("utf-8", "surrogateescape"), None)
    return _FOLD.sub(" ", value).strip()


def header_text(value: str | None) -> str:
    """A raw header value, unfolded, its 8-bit bytes and encoded words decoded."""
    return decode_words(raw_header(value)) if value else ""


_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


def mailboxes(values: Iterable[str]) -> list[tuple[str, str]]:
    """``(display name, lower-cased address)`` of every valid address in raw address headers."""
    found = []
    for name, address in getaddresses([raw_header(v) for v in values]):
        address = address.strip()
        if _ADDRESS.match(address):
            found.append((decode_words(name).strip(), address.lower()))
    return found


_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


def normalize_message_id(value: str) -> str:
    """``<Local@Example.COM>`` → ``Local@example.com``."""
    value = value.strip().strip("<>").strip()
    local, at, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}" if at and local else value


def message_ids(value: str | None) -> list[str]:
    """The normalized Message-IDs of a header (bare ids without ``<>`` are tolerated)."""
    if not value:
        return []
    value = raw_header(value)
    found = _MESSAGE_ID.findall(value) or value.split()
    return [normalized for item in found if (normalized := normalize_message_id(item))]


def parse_date(value: str | None) -> datetime | None:
    """An RFC 5322 date, aware (``-0000`` and no zone mean UTC); None when absent or invalid."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(raw_header(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


_TOKEN = re.compile(r"^[a-z0-9][a-z0-9._=-]{0,127}$")


def plus_token(recipients: Iterable[str], address: str) -> str | None:
    """The ``<token>`` of the first ``local+<token>@domain`` recipient of the inbox ``local@domain``."""
    local, _, domain = address.lower().rpartition("@")
    prefix = local + "+"
    for recipient in recipients:
        r_local, _, r_domain = recipient.lower().rpartition("@")
        if r_domain == domain and r_local.startswith(prefix):
            token = r_local[len(prefix) :]
            if _TOKEN.match(token):
                return token
    return None


# --- text ----------------------------------------------------------------------------------------

_QUOTED = re.compile(r"^\s*>")
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(?:original message|原始邮件|原邮件|邮件原文|回复的原邮件)\s*-{2,}\s*$", re.IGNORECASE
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_HEADER_START = re.compile(r"^\s*\**\s*(?:from|发件人|寄件者)\s*\**\s*[:：]", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^\s*\**\s*(?:sent|date|to|cc|subject|发送时间|时间|日期|收件人|抄送|主题|寄件日期|收件者|主旨)\s*\**\s*[:：]",
    re.IGNORECASE,
)
_ATTRIBUTION_START = re.compile(r"^\s*(?:on|在|le|am)\b", re.IGNORECASE)
_ATTRIBUTION = re.compile(
    r"^\s*(?:on\s.*\d.*\swrote|在.*\d.*写道|le\s.*\d.*\sa\s+écrit|am\s.*\d.*\sschrieb)\s*[:：]\s*$",
    re.IGNORECASE | re.DOTALL,
)
_SENTENCE_END = re.compile(r"[.!?。！？]\s*$")


def _header_block(lines: Sequence[str], start: int) -> bool:
    """A forwarded/replied header block (``From:`` then ``Sent:``/``发送时间:``…) starts at ``start``."""
    if start >= len(lines) or not _HEADER_START.match(lines[start]):
        return False
    return any(_HEADER_NEXT.match(line) for line in lines[start + 1 : start + 5])


def _attribution(lines: Sequence[str], start: int) -> int:
    """How many lines (1–2) an "On … wrote:" / "在…写道：" attribution at ``start`` spans; 0 if none."""
    if not _ATTRIBUTION_START.match(lines[start]):
        return 0
    if _ATTRIBUTION.match(lines[start]):
        return 1
    two_lines = start + 1 < len(lines) and not _SENTENCE_END.search(lines[start])
    return 2 if two_lines and _ATTRIBUTION.match(lines[start] + " " + lines[start + 1]) else 0


def strip_quoted(text: str) -> str:
    """The new part of a reply: quoted (``>``) lines dropped, history after a separator cut.

    Cut at: ``-----Original Message-----`` / ``-----原始邮件-----``; an Outlook ``____`` line or a
    ``From:``/``发件人:`` header block; an "On … wrote:" / "在…写道：" attribution not followed by ``>``
    lines (when it is, only the quoted lines go, so inline answers stay). Text that is nothing but
    history is kept whole.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _SEPARATOR.match(line) or _header_block(lines, index):
            break
        if _UNDERSCORES.match(line):
            following = next((i for i in range(index + 1, len(lines)) if lines[i].strip()), len(lines))
            if _header_block(lines, following):
                break
        span = _attribution(lines, index)
        if span:
            following = next((i for i in range(index + span, len(lines)) if lines[i].strip()), len(lines))
            if following < len(lines) and _QUOTED.match(lines[following]):
                index += span
                continue
            break
        if not _QUOTED.match(line):
            kept.append(line.rstrip())
        index += 1
    result = _tidy(kept)
    return result or _tidy(line.rstrip() for line in lines)


def _tidy(lines: Iterable[str]) -> str:
    """Join lines, at most one blank line in a row, no leading or trailing blank lines."""
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n")


_BLOCK_TAGS = [
    "div", "li", "tr", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "hr",
    "section", "article", "header", "footer", "address", "dd", "dt", "center",
]  # fmt: skip
_PARAGRAPH_TAGS = ["p", "blockquote", "h1", "h2", "h3"]
_QUOTE_SELECTOR = "blockquote, div.gmail_quote, div.yahoo_quoted, div.moz-cite-prefix"
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0\u3000]+")
_BREAKS = re.compile(r" *[\x00\x01\x02][\x00\x01\x02 ]*")
_XML_DECLARATION = re.compile(r"<\?xml[\s:][^>]*>", re.IGNORECASE)
_BLOCK, _LINE, _PARAGRAPH = "\x00", "\x01", "\x02"


def _line_breaks(match: re.Match[str]) -> str:
    marks = match.group()
    return "\n\n" if _PARAGRAPH in marks else "\n" * max(1, marks.count(_LINE))


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: no scripts or styles, no quoted history blocks (``blockquote``,
    Gmail/Yahoo/Thunderbird quote containers); source line breaks are spaces as in a browser, ``<br>``
    and block elements break lines, paragraphs are separated by a blank line."""
    html = html[:MAX_HTML_CHARS]
    if "<" not in html:  # not markup at all (and Beautiful Soup would warn that it looks like a file name)
        return _tidy(line.strip() for line in unescape(html).replace("\r\n", "\n").split("\n"))
    # an XML declaration makes Beautiful Soup warn; it means nothing to the text
    soup = BeautifulSoup(_XML_DECLARATION.sub("", html), "html.parser")
    for tag in soup(["script", "style", "head", "title", "template", "noscript"]):
        tag.decompose()
    for tag in soup.select(_QUOTE_SELECTOR):
        tag.decompose()
    for tag in soup.find_all("br"):
        tag.replace_with(_LINE)
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before(_BLOCK)
        tag.append(_BLOCK)
    for tag in soup.find_all(_PARAGRAPH_TAGS):
        tag.insert_before(_PARAGRAPH)
        tag.append(_PARAGRAPH)
    text = _BREAKS.sub(_line_breaks, _SPACES.sub(" ", soup.get_text()))
    return _tidy(line.strip() for line in text.split("\n"))


def body_text(plain: str, html: str) -> str:
    """The customer's new text: the plain body (or the HTML one reduced to text) without history."""
    text = plain if plain.strip() else html_to_text(html) if html.strip() else ""
    return strip_quoted(text) if text else ""


# --- MIME ----------------------------------------------------------------------------------------

_POLICY = email_policy.default
_PARSE_ERRORS = (
    email_errors.MessageError,
    IndexError,
    AttributeError,
    ValueError,
    TypeError,
    LookupError,
    UnicodeError,
    RecursionError,
)
"""What the stdlib may raise on hostile MIME despite its "defects, not exceptions" design."""


class _TooManyParts(Exception):
    """Raised inside the parser to stop building a message that has gone over its part budget."""


class _PartBudget:
    """The parser's message factory: refuses to build more than ``limit`` parts."""

    __slots__ = ("left",)

    def __init__(self, limit: int) -> None:
        self.left = limit

    def __call__(self, policy: Any = _POLICY) -> EmailMessage:
        self.left -= 1
        if self.left < 0:
            raise _TooManyParts
        return EmailMessage(policy=policy)


_ADDRESS_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "to", "cc")


def parse_mime(raw: bytes, limits: MimeLimits) -> EmailFacts:
    """The facts of a raw RFC 5322 message, parsed once; 400/413 when it breaks the limits."""
    try:
        root = BytesParser(policy=_POLICY.clone(message_factory=_PartBudget(limits.max_parts))).parsebytes(raw)
        headers = header_map(root)
        plain, html, attachments = _walk(root, limits)
    except _TooManyParts as exc:
        raise MimeTooComplex(f"the message has more than {limits.max_parts} MIME parts") from exc
    except RecursionError as exc:
        raise MimeTooComplex(f"MIME parts are nested deeper than {limits.max_depth} levels") from exc
    except _PARSE_ERRORS as exc:
        raise MalformedBody(f"the MIME message cannot be parsed ({type(exc).__name__})") from exc
    return _facts_from_headers(
        headers,
        text=body_text("\n".join(plain), "\n".join(html)),
        attachments=attachments,
        digest=hashlib.sha256(raw).hexdigest(),
    )


def header_map(message: MimePart) -> dict[str, list[str]]:
    """Raw header values by lower-cased name, in order (no header objects are built)."""
    headers: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        headers.setdefault(name.lower(), []).append(value)
    return headers


def parse_header_block(block: bytes) -> dict[str, list[str]]:
    """The header map of a bare header block (SendGrid's ``headers`` field)."""
    try:
        return header_map(BytesHeaderParser(policy=_POLICY).parsebytes(block))
    except _PARSE_ERRORS as exc:
        raise MalformedBody(f"the headers field cannot be parsed ({type(exc).__name__})") from exc


def _first(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _facts_from_headers(
    headers: Mapping[str, list[str]], *, text: str, attachments: list[Attachment], digest: str
) -> EmailFacts:
    senders = mailboxes(headers.get("from", [])) or mailboxes(headers.get("sender", []))
    reply_to = mailboxes(headers.get("reply-to", []))
    own = message_ids(_first(headers, "message-id"))
    return EmailFacts(
        sender=senders[0] if senders else None,
        subject=header_text(_first(headers, "subject")),
        message_id=own[0] if own else None,
        in_reply_to=message_ids(_first(headers, "in-reply-to")),
        references=message_ids(" ".join(headers.get("references", []))),
        recipients=[a for name in _ADDRESS_HEADERS for _, a in mailboxes(headers.get(name, []))],
        date=parse_date(_first(headers, "date")),
        text=text,
        attachments=attachments,
        digest=digest,
        reply_to=reply_to[0][1] if reply_to else None,
    )


_ATTACHED_MESSAGES = ("message/rfc822", "message/global")


def _walk(root: MimePart, limits: MimeLimits) -> tuple[list[str], list[str], list[Attachment]]:
    """Inline text/plain and text/html bodies, and every other leaf described as an attachment."""
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    stack: list[tuple[MimePart, int, bool]] = [(root, 0, False)]
    while stack:
        part, depth, attached = stack.pop()
        if depth > limits.max_depth:
            raise MimeTooComplex(f"MIME parts are nested deeper than {limits.max_depth} levels")
        content_type = part.get_content_type()
        if part.is_multipart():
            if content_type in _ATTACHED_MESSAGES and not attached and depth > 0:
                attachments.append(_describe_message(part, limits, len(attachments) + 1))
                attached = True
            children = part.get_payload()
            children = children if isinstance(children, list) else []
            stack.extend((c, depth + 1, attached) for c in reversed(children) if isinstance(c, MimePart))
            continue
        if attached:
            continue
        filename = part.get_filename()
        if (
            content_type in ("text/plain", "text/html")
            and not filename
            and part.get_content_disposition() != "attachment"
        ):
            data = part.get_payload(decode=True)
            text = decode_text(data if isinstance(data, bytes) else b"", part.get_content_charset())
            (plain if content_type == "text/plain" else html).append(text)
        else:
            data = part.get_payload(decode=True)
            attachments.append(
                describe_attachment(
                    data if isinstance(data, bytes) else b"", filename, content_type, limits, len(attachments) + 1
                )
            )
    return plain, html, attachments


def clean_filename(name: str | None, fallback: str) -> str:
    """A display file name: decoded, no directories, no control characters, at most 255 characters."""
    if name:
        name = header_text(name).replace("\\", "/").rsplit("/", 1)[-1]
        name = "".join(ch for ch in name if ch.isprintable()).strip()
    return (name or fallback)[:255]


def describe_attachment(
    data: bytes, filename: str | None, content_type: str, limits: MimeLimits, index: int
) -> Attachment:
    """Name, type, size and SHA-256 of an attachment; 413 beyond the per-attachment limit."""
    name = clean_filename(filename, f"attachment-{index}")
    if len(data) > limits.max_attachment_bytes:
        raise AttachmentTooLarge(
            f"attachment {index} is {len(data)} bytes, over the limit of {limits.max_attachment_bytes}"
        )
    return Attachment(
        name=name, content_type=content_type[:255], size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


def _describe_message(part: MimePart, limits: MimeLimits, index: int) -> Attachment:
    inner = part.get_payload(0)
    assert isinstance(inner, MimePart)
    subject = header_text(_first(header_map(inner), "subject"))
    name = clean_filename(part.get_filename() or (f"{subject[:200]}.eml" if subject else None), f"message-{index}.eml")
    try:
        data = inner.as_bytes()
    except _PARSE_ERRORS:  # the attached message cannot be serialized again: describe it without its size
        return Attachment(name=name, content_type=part.get_content_type())
    return describe_attachment(data, name, part.get_content_type(), limits, index)


# --- pre-parsed posts ----------------------------------------------------------------------------


def _json(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _content_digest(parts: Iterable[bytes], attachments: Iterable[Attachment]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    for attachment in attachments:
        digest.update((attachment.sha256 or "").encode())
    return digest.hexdigest()


def _uploaded(
    part: FilePart, limits: MimeLimits, index: int, name: str | None = None, content_type: str | None = None
) -> Attachment:
    """The description of an uploaded (already hashed) file; 413 beyond the per-attachment limit."""
    if part.size > limits.max_attachment_bytes:
        raise AttachmentTooLarge(
            f"attachment {index} is {part.size} bytes, over the limit of {limits.max_attachment_bytes}"
        )
    return Attachment(
        name=clean_filename(name or part.filename, f"attachment-{index}"),
        content_type=(content_type or part.content_type or "application/octet-stream").lower()[:255],
        size=part.size,
        sha256=part.sha256,
    )


def sendgrid_facts(fields: Mapping[str, bytes], files: Sequence[FilePart], limits: MimeLimits) -> EmailFacts:
    """The facts of a SendGrid Inbound Parse post: the raw ``email`` field when "send raw" is on,
    else the parsed fields (``headers``, ``from``, ``to``, ``cc``, ``subject``, ``text``, ``html``,
    ``charsets``, ``envelope``, ``attachment-info`` and files ``attachmentN``)."""
    envelope = _json(fields.get("envelope"))
    envelope_to = envelope.get("to") if isinstance(envelope, dict) else None
    envelope_recipients = mailboxes(str(v) for v in envelope_to) if isinstance(envelope_to, list) else []
    raw = fields.get("email")
    if raw is not None:
        facts = parse_mime(raw, limits)
        facts.recipients[:0] = [a for _, a in envelope_recipients]
        return facts

    charsets = _json(fields.get("charsets"))
    charsets = charsets if isinstance(charsets, dict) else {}

    def text_field(name: str) -> str:
        data = fields.get(name)
        return decode_text(data, str(charsets.get(name) or "utf-8")) if data else ""

    headers = parse_header_block(fields.get("headers", b""))
    info = _json(fields.get("attachment-info"))
    info = info if isinstance(info, dict) else {}
    attachments = []
    for index, part in enumerate(files, start=1):
        described = info.get(part.field)
        described = described if isinstance(described, dict) else {}
        name = described.get("filename") or described.get("name")
        kind = described.get("type")
        attachments.append(_uploaded(part, limits, index, str(name) if name else None, str(kind) if kind else None))
    for name in ("from", "subject", "to", "cc"):
        if fields.get(name):  # SendGrid's decoded values win over the raw headers
            headers[name] = [text_field(name)]
    facts = _facts_from_headers(
        headers,
        text=body_text(text_field("text"), text_field("html")),
        attachments=attachments,
        digest=_content_digest(
            (fields.get(n, b"") for n in ("headers", "from", "to", "cc", "subject", "text", "html")), attachments
        ),
    )
    facts.recipients[:0] = [a for _, a in envelope_recipients]
    return facts


def mailgun_facts(fields: Mapping[str, bytes], files: Sequence[FilePart], limits: MimeLimits) -> EmailFacts:
    """The facts of a Mailgun route post (field names lower-cased): ``body-mime`` when the route posts
    MIME, else ``from``/``sender``, ``recipient``, ``subject``, ``body-plain``, ``body-html``,
    ``stripped-text``, ``message-id``, ``in-reply-to``, ``references``, ``message-headers`` and
    files ``attachment-N``. Mailgun posts UTF-8."""

    def text_field(name: str) -> str:
        data = fields.get(name)
        return decode_text(data, "utf-8") if data else ""

    recipients = [a for _, a in mailboxes([text_field("recipient")])]
    raw = fields.get("body-mime")
    if raw is not None:
        facts = parse_mime(raw, limits)
        facts.recipients[:0] = recipients
        return facts

    headers: dict[str, list[str]] = {}
    pairs = _json(fields.get("message-headers"))
    for pair in pairs if isinstance(pairs, list) else ():
        if isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
            headers.setdefault(pair[0].lower(), []).append(pair[1])
    for name in ("from", "subject", "message-id", "in-reply-to", "references"):
        if fields.get(name):
            headers[name] = [text_field(name)]
    if not mailboxes(headers.get("from", [])) and fields.get("sender"):
        headers["from"] = [text_field("sender")]
    attachments = [_uploaded(part, limits, index) for index, part in enumerate(files, start=1)]
    stripped = text_field("stripped-text")
    text = strip_quoted(stripped) if stripped.strip() else body_text(text_field("body-plain"), text_field("body-html"))
    facts = _facts_from_headers(
        headers,
        text=text,
        attachments=attachments,
        digest=_content_digest(
            (
                fields.get(n, b"")
                for n in ("message-headers", "from", "recipient", "subject", "body-plain", "body-html")
            ),
            attachments,
        ),
    )
    facts.recipients[:0] = recipients
    return facts


# --- normalization -------------------------------------------------------------------------------


def _bounded(key: str) -> str:
    return key if len(key) <= MAX_ROOT else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def thread_root(facts: EmailFacts, address: str) -> str:
    """The conversation: a plus-address token, else the first References id, else In-Reply-To, else
    the message's own id (or its content hash)."""
    token = plus_token(facts.recipients, address)
    if token:
        return token
    for ids in (facts.references, facts.in_reply_to):
        if ids:
            return _bounded(ids[0])
    return dedup_key(facts)


def dedup_key(facts: EmailFacts) -> str:
    return _bounded(facts.message_id) if facts.message_id else f"sha256:{facts.digest}"


def to_contact_event(inbox: EmailInbox, facts: EmailFacts, received_at: datetime) -> ContactEvent:
    """Normalize one email received on ``inbox``."""
    if facts.sender is None:
        raise InvalidPayload("the email has no valid sender address (From)")
    display_name, sender = facts.sender
    address = customer_id(Channel.EMAIL, sender, "the sender address (From)")
    dedup = dedup_key(facts)
    metadata = {"subject": facts.subject[:998], "provider": inbox.provider.value}
    if facts.message_id:
        metadata["message_id"] = dedup
    if facts.reply_to and facts.reply_to != address:
        metadata["reply_to"] = facts.reply_to[:256]
    text = facts.text
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT]
        metadata["truncated"] = "true"
    return ContactEvent(
        event_id=event_id(Channel.EMAIL, inbox.id, dedup),
        channel=Channel.EMAIL,
        account_id=inbox.id,
        conversation_key=conversation_key(Channel.EMAIL, inbox.id, thread_root(facts, inbox.address)),
        dedup_key=dedup,
        customer=Customer(platform_id=address, display_name=display_name[:256] or None),
        message=Message(text=text, attachments=tuple(facts.attachments)),
        occurred_at=facts.date or received_at,
        received_at=received_at,
        metadata=metadata,
    )
