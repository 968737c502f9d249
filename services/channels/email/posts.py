"""What one email says when the provider posts it pre-parsed: SendGrid Inbound Parse's and Mailgun routes' form
fields (or the raw MIME they carry when the provider is told to send it raw)."""

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from contracts import Attachment
from services.channels.email.headers import decode_text, mailboxes
from services.channels.email.inbox import AttachmentTooLarge, MimeLimits
from services.channels.email.mime import (
    EmailFacts,
    FilePart,
    clean_filename,
    facts_from_headers,
    parse_header_block,
    parse_mime,
)
from services.channels.email.text import body_text, strip_quoted


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
    facts = facts_from_headers(
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
    facts = facts_from_headers(
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
