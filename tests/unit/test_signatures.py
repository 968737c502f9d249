"""Standard Webhooks verification, with the specification's known-answer vector."""

import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from services.channels.exceptions import BadSignature
from services.channels.webchat.signature import StandardWebhookVerifier

# the Standard Webhooks reference vector (shared/vectors/README.md)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = '{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

OTHER_SECRET = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk="


def test_known_answer_vector() -> None:
    assert Webhook(SECRET).sign(MSG_ID, datetime.fromtimestamp(TIMESTAMP, tz=UTC), BODY) == EXPECTED


def _headers(secret: str, body: str, *, at: int | None = None, msg_id: str = MSG_ID) -> dict[str, str]:
    at = int(time.time()) if at is None else at
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, tz=UTC), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_a_fresh_signature_verifies_and_yields_the_webhook_id() -> None:
    assert StandardWebhookVerifier([SECRET]).verify(BODY, _headers(SECRET, BODY)) == MSG_ID


def test_the_vector_itself_is_refused_now_because_it_is_stale() -> None:
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": EXPECTED}
    with pytest.raises(BadSignature, match="more than 5 minutes in the past"):
        StandardWebhookVerifier([SECRET]).verify(BODY, headers)


def test_rotation_any_configured_secret_may_sign() -> None:
    verifier = StandardWebhookVerifier([OTHER_SECRET, SECRET])
    assert verifier.verify(BODY, _headers(SECRET, BODY)) == MSG_ID
    assert verifier.verify(BODY, _headers(OTHER_SECRET, BODY)) == MSG_ID


def test_several_signatures_in_one_header_any_may_match() -> None:
    headers = _headers(SECRET, BODY)
    wrong = _headers(OTHER_SECRET, BODY)["webhook-signature"]
    headers["webhook-signature"] = f"{wrong} {headers['webhook-signature']}"
    assert StandardWebhookVerifier([SECRET]).verify(BODY, headers) == MSG_ID


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h: h.pop("webhook-signature"), "missing header"),
        (lambda h: h.pop("webhook-id"), "missing header"),
        (lambda h: h.update({"webhook-signature": "v1,AAAA"}), "no signature matches"),
        (lambda h: h.update({"webhook-signature": "garbage"}), "malformed"),
        (lambda h: h.update({"webhook-signature": "v1,%%%"}), "malformed|no signature matches"),
        (lambda h: h.update({"webhook-timestamp": "yesterday"}), "not a Unix time"),
        (lambda h: h.update({"webhook-timestamp": str(int(time.time()) + 3600)}), "in the future"),
        (lambda h: h.update({"webhook-id": "msg_other"}), "no signature matches"),
    ],
)
def test_bad_signatures_are_refused_with_a_reason(mutate: object, message: str) -> None:
    headers = _headers(SECRET, BODY)
    mutate(headers)  # type: ignore[operator]
    with pytest.raises(BadSignature, match=message):
        StandardWebhookVerifier([SECRET]).verify(BODY, headers)


def test_a_tampered_body_is_refused() -> None:
    with pytest.raises(BadSignature, match="no signature matches"):
        StandardWebhookVerifier([SECRET]).verify('{"test": 1}', _headers(SECRET, BODY))
