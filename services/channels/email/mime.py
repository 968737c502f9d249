"""What one email says (``EmailFacts``), read from raw RFC 5322 MIME.

MIME is parsed once with the stdlib parser (``email.policy.default``) under a part budget, so a MIME bomb is refused
before it costs much; text bodies go to ``text.body_text``, every other leaf is described as an attachment (name,
type, size, SHA-256) and never kept.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email import errors as email_errors
from email import policy as email_policy
from email.message import EmailMessage
from email.message import Message as MimePart
from email.parser import BytesHeaderParser, BytesParser
from typing import Any

from contracts import Attachment
from services.channels.email.headers import decode_text, header_text, mailboxes, message_ids, parse_date
from services.channels.email.inbox import AttachmentTooLarge, MimeLimits, MimeTooComplex
from services.channels.email.text import body_text
from services.channels.exceptions import MalformedBody


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
    return facts_from_headers(
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


def first_header(headers: Mapping[str, list[str]], name: str) -> str | None:
    """The first value of header ``name`` in a header map: a repeated Subject or Date counts once, as mail does."""
    values = headers.get(name)
    return values[0] if values else None


def facts_from_headers(
    headers: Mapping[str, list[str]], *, text: str, attachments: list[Attachment], digest: str
) -> EmailFacts:
    """The facts of an email from its header map and its already extracted text and attachments (raw MIME and
    pre-parsed posts both end here, so they are threaded alike)."""
    senders = mailboxes(headers.get("from", [])) or mailboxes(headers.get("sender", []))
    reply_to = mailboxes(headers.get("reply-to", []))
    own = message_ids(first_header(headers, "message-id"))
    return EmailFacts(
        sender=senders[0] if senders else None,
        subject=header_text(first_header(headers, "subject")),
        message_id=own[0] if own else None,
        in_reply_to=message_ids(first_header(headers, "in-reply-to")),
        references=message_ids(" ".join(headers.get("references", []))),
        recipients=[a for name in _ADDRESS_HEADERS for _, a in mailboxes(headers.get(name, []))],
        date=parse_date(first_header(headers, "date")),
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
    subject = header_text(first_header(header_map(inner), "subject"))
    name = clean_filename(part.get_filename() or (f"{subject[:200]}.eml" if subject else None), f"message-{index}.eml")
    try:
        data = inner.as_bytes()
    except _PARSE_ERRORS:  # the attached message cannot be serialized again: describe it without its size
        return Attachment(name=name, content_type=part.get_content_type())
    return describe_attachment(data, name, part.get_content_type(), limits, index)
