"""The customer's new text of an email: the plain body, or the HTML one reduced to readable text, with the quoted
history of earlier messages cut (``>`` lines, "On … wrote:" / "在…写道：", Outlook and Chinese mail clients' header
blocks)."""

import re
from collections.abc import Iterable, Sequence
from html import unescape

from bs4 import BeautifulSoup

MAX_HTML_CHARS = 2 * 1024 * 1024
"""HTML beyond this many characters is not looked at when reducing an HTML-only body to text."""


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
