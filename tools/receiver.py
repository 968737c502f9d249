"""The notification receiver ``kefu dev`` runs, so the demo's escalation webhooks reach somebody.

``kefu dev`` generates a Standard Webhooks secret at start, gives it to this receiver and to the escalation service
(for every webhook of the policy whose URL is this receiver), and runs it on loopback (127.0.0.1:8003 by default).

* ``POST /hooks/{name}``: verifies the signature with the channels service's verifier (the reference
  ``standardwebhooks`` library, ±5 minute window); a bad one is a 401 and is not kept. A good one is kept and
  printed on standard output, once per ``webhook-id`` (delivery is at least once: a repeat is acknowledged, not kept).
* ``GET /notifications``: what was received, oldest first.
"""

import base64
import json
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from kefu.ops import ApiError, install_error_handlers, ops_router
from kefu.settings import ServiceSettings
from services.channels.exceptions import BadSignature
from services.channels.webchat.signature import StandardWebhookVerifier

MAX_KEPT = 1000  # a long-running demo must not grow without bound; the oldest are dropped
REASON_CHARS = 80


class ReceiverSettings(ServiceSettings):
    port: int = Field(default=8003, ge=1, le=65535)
    receiver_secret: SecretStr = Field(
        description="the Standard Webhooks key (whsec_...) notifications are signed with; `kefu dev` generates it"
    )

    @field_validator("receiver_secret")
    @classmethod
    def _a_whsec_key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("whsec_"):
            raise ValueError("must be a Standard Webhooks key: whsec_ followed by base64")
        return value


class Notification(BaseModel):
    """One verified notification, as received."""

    hook: str = Field(description="the webhook's name, from the URL path", examples=["wecom-crisis"])
    webhook_id: str = Field(description="the sender's message id (the same on every retry)")
    received_at: datetime
    payload: Any = Field(description="the JSON body")


def generate_secret() -> str:
    """A fresh Standard Webhooks key: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def describe(notification: Notification) -> str:
    """One line for a person watching the ``kefu dev`` output: which webhook, what happened, to which contact."""
    body = notification.payload if isinstance(notification.payload, dict) else {}
    fields = [f"{key}={body[key]}" for key in ("type", "contact_id", "target", "queue") if body.get(key)]
    reason = str(body.get("reason") or "")
    reason = f" ({reason[:REASON_CHARS]}…)" if len(reason) > REASON_CHARS else f" ({reason})" if reason else ""
    return f"notified {notification.hook}: {' '.join(fields) or 'a notification'}{reason}"


def create_app(secret: str, *, announce: Callable[[Notification], None] | None = None) -> FastAPI:
    """The receiver's app, verifying with ``secret``; ``announce`` is called for each new notification."""
    verifier = StandardWebhookVerifier([secret])
    # by webhook-id, in arrival order; the handlers never await while changing it, so no lock is needed
    kept: dict[str, Notification] = {}
    app = FastAPI(title="kefu dev notification receiver", summary="Verifies and keeps escalation webhooks.")
    install_error_handlers(app)
    app.include_router(ops_router(lambda: {}))

    @app.post("/hooks/{name}", summary="Receive one signed notification")
    async def receive(name: str, request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            webhook_id = verifier.verify(body, request.headers)
        except BadSignature as exc:
            raise ApiError(401, "bad_signature", exc.detail) from exc
        try:
            payload = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ApiError(400, "malformed_body", f"not JSON: {exc}") from exc
        notification = Notification(hook=name, webhook_id=webhook_id, received_at=datetime.now(UTC), payload=payload)
        if webhook_id in kept:
            return {"status": "duplicate"}
        kept[webhook_id] = notification
        while len(kept) > MAX_KEPT:
            del kept[next(iter(kept))]
        if announce is not None:
            announce(notification)
        return {"status": "received"}

    @app.get("/notifications", summary="Every verified notification received, oldest first")
    async def notifications() -> list[Notification]:
        return list(kept.values())

    return app


def run() -> int:
    """``kefu receiver``: serve until SIGINT/SIGTERM, printing each notification on standard output."""
    from tools.serve import serve

    try:
        settings = ReceiverSettings()  # the secret comes from the environment (KEFU_RECEIVER_SECRET)
    except ValidationError as exc:
        print(f"kefu receiver: {exc}", file=sys.stderr)
        return 2

    def announce(notification: Notification) -> None:
        print(f"kefu dev: {describe(notification)}", file=sys.stdout, flush=True)

    serve(create_app(settings.receiver_secret.get_secret_value(), announce=announce), settings)
    return 0
