"""Twilio's webhook protocol: the form body, the URL Twilio requested, and ``X-Twilio-Signature``.

Twilio signs ``base64(HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 …))`` with the POST
parameters sorted by name (then value), the URL being exactly what Twilio requested, query string
included. Like Twilio's own ``RequestValidator``, a URL is accepted with and without its port (the
scheme's default port when it has none), since Twilio is inconsistent about it. Signatures carry no
timestamp: a replayed call gets the same event id (``CallSid:CallStatus``), so downstream
deduplication absorbs it.
"""

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from services.channels.exceptions import BadSignature, MalformedBody

SIGNATURE_HEADER = "x-twilio-signature"
MAX_FIELDS = 256
"""Twilio voice webhooks carry a few dozen parameters; more is not Twilio."""

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Params = Sequence[tuple[str, str]]


def parse_form(text: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of an ``application/x-www-form-urlencoded`` body, in order.

    Raises ``MalformedBody`` for a broken percent-escape, an escape that is not UTF-8, or too many fields. A NUL
    (``%00``, in a carrier's caller name) is kept: the signature covers it, and the contact event makes it U+FFFD
    (``contracts.text``) rather than failing the call.
    """
    bad = _BAD_ESCAPE.search(text)
    if bad is not None:
        raise MalformedBody(f"invalid percent-encoding at character {bad.start()}")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError as exc:
        raise MalformedBody("a percent-encoded value is not valid UTF-8") from exc
    except ValueError as exc:
        raise MalformedBody(f"more than {MAX_FIELDS} form fields") from exc
    return pairs


def compute_signature(token: bytes, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's signature of a request to ``url`` with form ``params``."""
    return _sign(token, url.encode("utf-8") + _signed_params(params)).decode("ascii")


def _signed_params(params: Iterable[tuple[str, str]]) -> bytes:
    return "".join(name + value for name, value in sorted(params)).encode("utf-8")


def _sign(token: bytes, data: bytes) -> bytes:
    return base64.b64encode(hmac.digest(token, data, hashlib.sha1))


def url_variants(url: str) -> tuple[str, ...]:
    """``url`` without any port, and with its port (the scheme's default if none): Twilio signs either.

    The same two candidates as Twilio's reference ``RequestValidator``.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is not a number
        return (url,)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host = hostport[: hostport.rfind(":")] if parts.port is not None else hostport
    without = urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}"))
    if port is None:
        return (without,)
    return (without, urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}:{port}")))


class TwilioRequestValidator:
    """Rebuilds the URL Twilio requested for one line and checks ``X-Twilio-Signature`` against it."""

    def __init__(self, tokens: Sequence[str], public_url: str, *, trust_forwarded_headers: bool) -> None:
        if not tokens:
            raise ValueError("at least one auth token is needed")
        self._tokens = tuple(token.encode("utf-8") for token in tokens)
        parts = urlsplit(public_url.rstrip("/"))
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path
        self._trust_forwarded = trust_forwarded_headers

    def url(self, path: str, query: str, headers: Mapping[str, str]) -> str:
        """The URL Twilio requested: the public URL (or forwarded scheme/host, if trusted) + path + query."""
        scheme, netloc = self._scheme, self._netloc
        if self._trust_forwarded:
            proto = _first(headers.get("x-forwarded-proto"))
            host = _first(headers.get("x-forwarded-host"))
            if proto.lower() in _DEFAULT_PORTS:
                scheme = proto.lower()
            if host:
                netloc = host
        url = f"{scheme}://{netloc}{self._prefix}{path}"
        return f"{url}?{query}" if query else url

    def verify(self, url: str, params: Params, signature: str | None) -> None:
        """Return if ``signature`` signs ``url`` and ``params`` with one of the line's tokens; else 401."""
        if not signature:
            raise BadSignature("missing X-Twilio-Signature header")
        given = signature.strip().encode("utf-8")
        signed_params = _signed_params(params)
        valid = False
        for candidate in url_variants(url):
            data = candidate.encode("utf-8") + signed_params
            for token in self._tokens:
                # no early exit: the time taken does not depend on which candidate matched
                valid |= hmac.compare_digest(_sign(token, data), given)
        if not valid:
            raise BadSignature(f"X-Twilio-Signature does not sign a request to {url} with these parameters")


def _first(value: str | None) -> str:
    """The first (client-side) entry of a comma-separated forwarded header."""
    return (value or "").split(",", 1)[0].strip()
