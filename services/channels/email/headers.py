"""Charsets and headers of real-world mail: bodies and RFC 2047 encoded words decoded with the declared charset
(GB2312 and GBK as their superset GB18030), falling back to UTF-8 and GB18030 and never failing on an unknown charset
name; addresses, Message-IDs (without ``<>``, domain lower-cased), dates, and the plus-address token of a reply."""

import base64
import binascii
import codecs
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache

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
    if not getattr(info, "_is_text_encoding", True) or info.name == "undefined":  # "undefined" refuses every byte
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
