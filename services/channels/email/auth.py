"""How email posts are authenticated.

* SendGrid Inbound Parse and raw posts carry no signature: the inbox's HTTP Basic credentials (or,
  for raw posts, a bearer token) are required; compared in constant time (over SHA-256 digests, so
  not even the length leaks).
* Mailgun signs every post: ``signature`` = hex HMAC-SHA256 with the webhook signing key over
  ``timestamp + token``; the timestamp must be within the tolerance of now and each token is used
  once (``first_use``, shared by every instance through PostgreSQL). A token whose delivery could not
  be published is released again, so the provider's retry is not taken for a replay.
"""

import base64
import binascii
import hashlib
import hmac
import logging
import re

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.channels.common.orm import replay_tokens
from services.channels.exceptions import BadSignature, Unauthorized

log = logging.getLogger(__name__)


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class HeaderAuth:
    """Checks ``Authorization``: HTTP Basic credentials and/or a bearer token, whichever is configured."""

    def __init__(self, *, basic: tuple[str, str] | None = None, bearer: str | None = None) -> None:
        if basic is None and bearer is None:
            raise ValueError("HeaderAuth needs basic credentials or a bearer token")
        self._basic = _digest(f"{basic[0]}:{basic[1]}".encode()) if basic else None
        self._bearer = _digest(bearer.encode()) if bearer else None
        schemes = [s for s, on in (("Basic", self._basic), ("Bearer", self._bearer)) if on]
        self._expected = " or ".join(schemes)

    def check(self, authorization: str | None) -> None:
        """Return if ``authorization`` carries the configured credentials; raise ``Unauthorized`` otherwise."""
        if not authorization:
            raise Unauthorized(f"missing Authorization header: this inbox requires {self._expected} credentials")
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "basic" and self._basic is not None:
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Unauthorized("Authorization Basic credentials are not base64") from exc
            if not hmac.compare_digest(_digest(decoded), self._basic):
                raise Unauthorized("wrong credentials")
            return
        if scheme == "bearer" and self._bearer is not None:
            if not hmac.compare_digest(_digest(credentials.encode("utf-8", "surrogateescape")), self._bearer):
                raise Unauthorized("wrong credentials")
            return
        raise Unauthorized(f"unsupported Authorization scheme: this inbox requires {self._expected} credentials")


_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")
_MAILGUN_FIELDS = ("timestamp", "token", "signature")


class MailgunVerifier:
    """Verifies Mailgun's webhook signature and timestamp; the caller checks the token's first use."""

    def __init__(self, signing_key: str, *, tolerance_seconds: int) -> None:
        self._key = signing_key.encode()
        self._tolerance = tolerance_seconds

    def verify(self, timestamp: str | None, token: str | None, signature: str | None, *, now: float) -> str:
        """The token of a correctly signed, fresh post; ``BadSignature`` otherwise."""
        present = {"timestamp": timestamp, "token": token, "signature": signature}
        missing = [name for name in _MAILGUN_FIELDS if not present[name]]
        if missing:
            raise BadSignature(f"missing Mailgun signature field(s): {', '.join(missing)}")
        assert timestamp and token and signature
        if not _TIMESTAMP.match(timestamp):
            raise BadSignature("timestamp is not a Unix time in seconds")
        if len(token) > 256:
            raise BadSignature("token is longer than 256 characters")
        if not _SIGNATURE.match(signature):
            raise BadSignature("signature is not 64 hex digits")
        if not hmac.compare_digest(_sign(self._key, timestamp, token), signature.lower()):
            raise BadSignature("signature does not match")
        skew = now - int(timestamp)
        if skew > self._tolerance:
            raise BadSignature(f"timestamp is more than {self._tolerance} seconds in the past")
        if skew < -self._tolerance:
            raise BadSignature(f"timestamp is more than {self._tolerance} seconds in the future")
        return token


def _sign(key: bytes, timestamp: str, token: str) -> str:
    return hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest()


def mailgun_signature(signing_key: str, timestamp: str, token: str) -> str:
    """Mailgun's signature of ``timestamp`` and ``token`` (for tests and local tools)."""
    return _sign(signing_key.encode(), timestamp, token)


async def release_token(engine: AsyncEngine, *, scope: str, token: str) -> None:
    """Forget a replay token whose delivery was not accepted, so the provider's retry gets through."""
    try:
        async with engine.begin() as conn:
            await conn.execute(
                delete(replay_tokens).where(replay_tokens.c.scope == scope, replay_tokens.c.token == token)
            )
    except (SQLAlchemyError, OSError) as exc:
        log.warning("could not release replay token of %s: %s", scope, type(exc).__name__)
