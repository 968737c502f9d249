"""Signature schemes of the platforms. Web chat: Standard Webhooks (HMAC-SHA256 over
``id.timestamp.body``), verified by the reference ``standardwebhooks`` library, which compares in
constant time and enforces the ±5 minute timestamp window.
"""

import binascii
from collections.abc import Mapping, Sequence

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.channels.exceptions import BadSignature

STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class StandardWebhookVerifier:
    """Verifies Standard Webhooks signatures against any of an account's secrets (rotation)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._webhooks = [Webhook(secret) for secret in secrets]

    def verify(self, body: str, headers: Mapping[str, str]) -> str:
        """Return the ``webhook-id`` of a correctly signed delivery; raise ``BadSignature`` otherwise."""
        present = {name: headers[name] for name in STANDARD_HEADERS if name in headers}
        missing = [name for name in STANDARD_HEADERS if name not in present]
        if missing:
            raise BadSignature(f"missing header(s): {', '.join(missing)}")
        problem = "no signature matches"
        for webhook in self._webhooks:
            try:
                webhook.verify(body, present, json_parse=False)
            except WebhookVerificationError as exc:
                problem = _explain(str(exc))
                if problem != "no signature matches":
                    break  # a timestamp problem is the same for every secret
            except (ValueError, binascii.Error):
                problem = "webhook-signature is malformed: expected space-separated 'v1,<base64>' entries"
                break
            else:
                return present["webhook-id"]
        raise BadSignature(problem)


def _explain(message: str) -> str:
    return {
        "Message timestamp too old": "webhook-timestamp is more than 5 minutes in the past",
        "Message timestamp too new": "webhook-timestamp is more than 5 minutes in the future",
        "Invalid Signature Headers": "webhook-timestamp is not a Unix time in seconds",
        "No matching signature found": "no signature matches",
    }.get(message, message)
