"""Douyin open platform webhook signatures: ``X-Douyin-Signature`` is the lowercase hex SHA-1 of the
app's ``client_secret`` followed by the raw request body (developer.open-douyin.com, Webhooks 概述,
消息来源验证).

SHA-1 over ``secret || body`` is a prefix MAC, open to length extension: whoever holds one signed
body can sign ``body || SHA-1 padding || suffix``. The padding starts with byte 0x80 right after the
body's closing ``}``, which is never valid UTF-8, so the endpoint's UTF-8 check (after this one)
refuses every such extension.
"""

import hashlib
import hmac

from services.channels.exceptions import BadSignature

SIGNATURE_HEADER = "x-douyin-signature"
_HEX_DIGITS = frozenset("0123456789abcdef")


class DouyinSignatureVerifier:
    """Checks ``X-Douyin-Signature`` for one app; the secret's hash prefix is computed once."""

    __slots__ = ("_prefix",)

    def __init__(self, client_secret: str) -> None:
        # SHA-1 is the platform's scheme, not a choice made here.
        self._prefix = hashlib.sha1(client_secret.encode("utf-8"))  # noqa: S324

    def sign(self, body: bytes) -> str:
        """The signature Douyin sends for ``body``: hex SHA-1 of ``client_secret + body``."""
        digest = self._prefix.copy()
        digest.update(body)
        return digest.hexdigest()

    def verify(self, body: bytes, signature: str | None) -> None:
        """Return if ``signature`` signs ``body``; raise ``BadSignature`` (401) otherwise."""
        if signature is None:
            raise BadSignature("missing X-Douyin-Signature header")
        candidate = signature.strip().lower()
        if len(candidate) != 40 or not _HEX_DIGITS.issuperset(candidate):
            raise BadSignature("X-Douyin-Signature is malformed: expected 40 hex digits (SHA-1)")
        expected = self._prefix.copy()
        expected.update(body)
        if not hmac.compare_digest(expected.digest(), bytes.fromhex(candidate)):
            raise BadSignature("X-Douyin-Signature does not match the body")
