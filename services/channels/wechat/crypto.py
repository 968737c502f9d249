"""WeChat and WeCom callback signatures and message encryption (the ``WXBizMsgCrypt`` scheme).

* signature: SHA-1 hex of the lexicographically sorted concatenation of the token, the timestamp,
  the nonce and, for encrypted callbacks, the ciphertext (``msg_signature``);
* encryption: AES-256-CBC, key = base64(EncodingAESKey + "="), IV = key[:16], PKCS#7 padding to
  32-byte blocks; plaintext = 16 random bytes + 4-byte big-endian length + message + receive id
  (the Official Account's appid, or the WeCom corp id).

Everything a request needs (key, cipher, token) is prepared once per account.
"""

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from services.channels.exceptions import BadSignature, MalformedBody
from services.channels.wechat.accounts import aes_key

BLOCK = 32
"""WeChat pads to 32-byte blocks (PKCS#7 with a 32-byte block), not AES's 16."""


def sha1_signature(*parts: str) -> str:
    """SHA-1 hex of the sorted concatenation of ``parts``: WeChat's ``signature``/``msg_signature``."""
    return hashlib.sha1("".join(sorted(parts)).encode(), usedforsecurity=False).hexdigest()


def signature_matches(given: str, *parts: str) -> bool:
    """Whether ``given`` is the signature of ``parts`` (compared in constant time)."""
    return hmac.compare_digest(given.strip().lower().encode(), sha1_signature(*parts).encode())


def check_timestamp(timestamp: str, *, now: float, tolerance: int) -> int:
    """``timestamp`` as Unix seconds, or ``BadSignature`` if it is not one or is out of the window."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise BadSignature("timestamp is not a Unix time in seconds")
    value = int(timestamp)
    if value < now - tolerance:
        raise BadSignature(f"timestamp is more than {tolerance} seconds in the past")
    if value > now + tolerance:
        raise BadSignature(f"timestamp is more than {tolerance} seconds in the future")
    return value


class WechatCrypto:
    """Signs, verifies, encrypts and decrypts callbacks of one account."""

    __slots__ = ("_cipher", "_receive_id", "_token")

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        key = aes_key(encoding_aes_key)
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))
        self._token = token
        self._receive_id = receive_id.encode()

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        """Raise ``BadSignature`` unless ``msg_signature`` signs ``encrypted``."""
        if not signature_matches(msg_signature, self._token, timestamp, nonce, encrypted):
            raise BadSignature("msg_signature does not match")

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """The ``msg_signature`` of ``encrypted``."""
        return sha1_signature(self._token, timestamp, nonce, encrypted)

    def decrypt(self, encrypted: str) -> str:
        """The message inside ``encrypted`` (base64), checked to be for this account's receive id.

        ``MalformedBody`` if it is not a well-formed ciphertext; ``BadSignature`` if it was
        encrypted for another appid or corp id.
        """
        try:
            data = base64.b64decode(encrypted, validate=True)
        except binascii.Error as exc:
            raise MalformedBody("Encrypt is not base64") from exc
        if not data or len(data) % 16:
            raise MalformedBody("Encrypt is not a whole number of AES blocks")
        decryptor = self._cipher.decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise MalformedBody("Encrypt does not decrypt to padded plaintext (wrong key or garbled payload)")
        content = plain[16:-pad]
        if len(content) < 4:
            raise MalformedBody("Encrypt is too short")
        (length,) = struct.unpack(">I", content[:4])
        if length > len(content) - 4:
            raise MalformedBody("Encrypt declares a message longer than itself")
        message, receive_id = content[4 : 4 + length], content[4 + length :]
        if not hmac.compare_digest(receive_id, self._receive_id):
            raise BadSignature("the decrypted message is for another appid / corp id")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedBody(f"the decrypted message is not valid UTF-8 (byte {exc.start})") from exc

    def encrypt(self, message: str, *, prefix: bytes | None = None) -> str:
        """``message`` encrypted for this account (base64); ``prefix``: the 16 random bytes (tests)."""
        prefix = os.urandom(16) if prefix is None else prefix
        if len(prefix) != 16:
            raise ValueError("prefix must be 16 bytes")
        body = message.encode()
        plain = prefix + struct.pack(">I", len(body)) + body + self._receive_id
        pad = BLOCK - len(plain) % BLOCK
        encryptor = self._cipher.encryptor()
        return base64.b64encode(encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()).decode()
