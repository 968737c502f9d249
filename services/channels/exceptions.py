"""Why a webhook is refused: each declares the HTTP status and code it is answered with (``kefu.errors``).

WebhookRejected
├── UnknownAccount        404: no such site / account
├── BodyTooLarge          413
├── UnsupportedMedia      415
├── BadSignature          401: missing, malformed or wrong signature; stale timestamp
│   └── Unauthorized      401: missing or wrong credentials (Basic, bearer)
├── ReplayedDelivery      409: a one-time token seen before
├── MalformedBody         400: not UTF-8, not JSON
├── InvalidPayload        422: JSON, but not the platform's format
├── StoreUnavailable      503: the database behind replay tokens or cursors failed; the sender retries
└── PlatformUnavailable   503: the platform's own API (a pull) failed; the sender retries
BrokerUnavailable         503: the contact could not be put on the broker; the sender retries
"""

from kefu.errors import ServiceError


class WebhookRejected(ServiceError):
    """A webhook refused for something the sender can act on."""

    status = 400
    code = "rejected"


class UnknownAccount(WebhookRejected):
    status = 404
    code = "unknown_account"


class BodyTooLarge(WebhookRejected):
    status = 413
    code = "body_too_large"


class UnsupportedMedia(WebhookRejected):
    status = 415
    code = "unsupported_media_type"


class BadSignature(WebhookRejected):
    status = 401
    code = "bad_signature"


class MalformedBody(WebhookRejected):
    status = 400
    code = "malformed_body"


class InvalidPayload(WebhookRejected):
    status = 422
    code = "invalid_payload"


class Unauthorized(BadSignature):
    code = "unauthorized"


class ReplayedDelivery(WebhookRejected):
    status = 409
    code = "replayed"


class StoreUnavailable(WebhookRejected):
    status = 503
    code = "database_unavailable"


class PlatformUnavailable(WebhookRejected):
    status = 503
    code = "platform_unavailable"


class BrokerUnavailable(ServiceError):
    """The broker did not acknowledge the contact in time; the sender retries (a 503 says when: ``Retry-After``)."""

    status = 503
    code = "broker_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}; retry later")
