"""The callback XML both WeChat Official Accounts and WeCom post, parsed safely, and the helpers every message
normalization of theirs uses."""

import re
from collections.abc import Mapping
from datetime import datetime
from xml.etree.ElementTree import ParseError

from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException

from contracts.text import REPLACEMENT
from services.channels.common.ids import unix_time
from services.channels.exceptions import InvalidPayload, MalformedBody

MAX_TEXT = 65536


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def parse_xml(text: str) -> dict[str, str]:
    """The child elements of a callback's ``<xml>`` root, by tag (first wins).

    Parsed by defusedxml with DTDs, entities and external references forbidden: a DOCTYPE is a
    ``MalformedBody`` (no XXE, no billion laughs); so is XML that does not parse. Another root is an
    ``InvalidPayload``. A character XML 1.0 cannot hold (NUL, another C0 control: a follower can type one, and it
    cannot be escaped) becomes U+FFFD instead of making the whole message unreadable.
    """
    if _NOT_XML.search(text) is not None:
        text = _NOT_XML.sub(REPLACEMENT, text)
    try:
        root = SafeElementTree.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MalformedBody(
            f"XML with a DOCTYPE, entity or external reference is refused ({type(exc).__name__})"
        ) from exc
    except ParseError as exc:
        raise MalformedBody(f"body is not XML: {exc}") from exc
    if root.tag != "xml":
        raise InvalidPayload(f"the root element must be <xml>, got <{root.tag[:64]}>")
    fields: dict[str, str] = {}
    for child in root:
        if isinstance(child.tag, str) and child.tag not in fields:
            fields[child.tag] = child.text or ""
    return fields


def required(fields: Mapping[str, str], name: str) -> str:
    """The stripped text of element ``name``; a message without it is not one WeChat sends (422)."""
    value = fields.get(name, "").strip()
    if not value:
        raise InvalidPayload(f"<{name}> is missing or empty")
    return value


def unix_seconds(value: str, name: str) -> datetime:
    """Element ``name``'s Unix time (``CreateTime``); a 422 rather than a 500 for one no datetime can hold."""
    moment = unix_time(int(value)) if value.isascii() and value.isdigit() and len(value) <= 12 else None
    if moment is None:
        raise InvalidPayload(f"<{name}> is not a Unix time")
    return moment


def text_lines(*parts: str | None) -> str:
    """The non-blank ``parts`` as lines, within the contract's text limit (locations, links, cards)."""
    return "\n".join(p.strip() for p in parts if p and p.strip())[:MAX_TEXT]


def non_empty(**values: str | None) -> dict[str, str]:
    """Contact metadata without the fields the message did not have."""
    return {key: value for key, value in values.items() if value}
