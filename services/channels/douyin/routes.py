"""Douyin open platform: ``POST /webhooks/douyin/{app_id}``, signed with ``X-Douyin-Signature``.

``verify_webhook`` is answered with its challenge; ``im_receive_msg`` becomes a contact event and is
answered 200 once the broker holds it; every other event is answered 200 and dropped, so Douyin does
not retry it.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.channels.common.http import (
    decode_utf8,
    describe,
    parse_json,
    publish,
    read_body,
    require_media_type,
)
from services.channels.common.runtime import Channels, channels_of
from services.channels.douyin.events import (
    RECEIVE_MESSAGE,
    VERIFY_WEBHOOK,
    DouyinPayloadError,
    DouyinWebhook,
    challenge_of,
    dedup_key,
    private_message,
    to_contact_event,
)
from services.channels.douyin.signature import SIGNATURE_HEADER, DouyinSignatureVerifier
from services.channels.exceptions import BadSignature, InvalidPayload, UnknownAccount

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

MSG_ID_HEADER = "msg-id"


@dataclass(frozen=True, slots=True)
class DouyinEndpoint:
    """What one app's webhook needs on every request, built once."""

    client_key: str
    verifier: DouyinSignatureVerifier


def setup(channels: Channels) -> dict[str, DouyinEndpoint]:
    """A signature verifier per configured app, by app id."""
    return {
        app.id: DouyinEndpoint(app.client_key, DouyinSignatureVerifier(app.client_secret.get_secret_value()))
        for app in channels.config.douyin
    }


@router.post(
    "/douyin/{app_id}",
    status_code=200,
    summary="A Douyin open platform event (private messages), signed with X-Douyin-Signature",
    responses={
        200: {
            "description": '{"challenge": …} for verify_webhook; {"status": "accepted", "event_id": …} once a '
            'customer message is on the broker; {"status": "ignored", "event": …} for events that are not contacts'
        },
        400: {"description": "not UTF-8 or not JSON"},
        401: {"description": "signature missing, malformed or wrong; client_key of another app"},
        404: {"description": "unknown app"},
        413: {"description": "body too large"},
        415: {"description": "not application/json"},
        422: {"description": "JSON that is not a Douyin event of its kind (content included)"},
        503: {"description": "the broker is unavailable; Douyin retries"},
    },
)
async def douyin(app_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]) -> JSONResponse:
    endpoint: DouyinEndpoint | None = channels.adapters["douyin"].get(app_id)
    if endpoint is None:
        raise UnknownAccount(f"no Douyin app {app_id!r}")
    require_media_type(request, "application/json")
    body = await read_body(request, channels.settings.max_body_bytes)
    endpoint.verifier.verify(body, request.headers.get(SIGNATURE_HEADER))
    webhook = parse_json(DouyinWebhook, decode_utf8(body))
    if webhook.client_key and webhook.client_key != endpoint.client_key:
        raise BadSignature(f"client_key is not the one of Douyin app {app_id!r}")
    try:
        if webhook.event == VERIFY_WEBHOOK:
            return JSONResponse({"challenge": challenge_of(webhook)})
        if webhook.event != RECEIVE_MESSAGE:
            return JSONResponse({"status": "ignored", "event": webhook.event})
        message = private_message(webhook)
        dedup = dedup_key(request.headers.get(MSG_ID_HEADER), webhook.log_id, message)
    except DouyinPayloadError as exc:
        raise InvalidPayload(str(exc)) from exc
    except ValidationError as exc:
        raise InvalidPayload(describe(exc, "content")) from exc
    event = to_contact_event(app_id, dedup, webhook, message, datetime.now(UTC))
    await publish(channels, event)
    return JSONResponse({"status": "accepted", "event_id": str(event.event_id)})
