"""Douyin open platform: ``POST /webhooks/douyin/{app_id}``, signed with ``X-Douyin-Signature``.

``verify_webhook`` is answered with its challenge; ``im_receive_msg`` becomes a contact event and is
answered 200 once the broker holds it; every other event is answered 200 and dropped, so Douyin does
not retry it.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from services.channels.common.http import (
    Accepted,
    accepted,
    decode_utf8,
    describe,
    parse_json,
    publish,
    read_body,
    require_media_type,
)
from services.channels.common.runtime import Channels, Platform, channels_of
from services.channels.douyin.account import DouyinApp
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
from services.channels.exceptions import BadSignature, InvalidPayload

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

MSG_ID_HEADER = "msg-id"


@dataclass(frozen=True, slots=True)
class DouyinEndpoint:
    """What one app's webhook needs on every request, built once."""

    client_key: str
    verifier: DouyinSignatureVerifier


def setup(app: DouyinApp, _: Channels) -> DouyinEndpoint:
    """The app's client_key and signature verifier (the secret's hash prefix computed once)."""
    return DouyinEndpoint(app.client_key, DouyinSignatureVerifier(app.client_secret.get_secret_value()))


class Challenge(BaseModel):
    """The answer to ``verify_webhook``: its challenge echoed."""

    challenge: int | str


class Ignored(BaseModel):
    """The answer to an event that is not a customer's contact (Douyin must not retry it)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)
    status: Literal["ignored"] = "ignored"
    event: str


@router.post(
    "/douyin/{app_id}",
    status_code=200,
    response_model=Challenge | Accepted | Ignored,
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
    endpoint = channels.account(DOUYIN, app_id)
    require_media_type(request, "application/json")
    body = await read_body(request, channels.settings.max_body_bytes)
    endpoint.verifier.verify(body, request.headers.get(SIGNATURE_HEADER))
    webhook = parse_json(DouyinWebhook, decode_utf8(body))
    if webhook.client_key and webhook.client_key != endpoint.client_key:
        raise BadSignature(f"client_key is not the one of Douyin app {app_id!r}")
    try:
        if webhook.event == VERIFY_WEBHOOK:
            return JSONResponse(Challenge(challenge=challenge_of(webhook)).model_dump())
        if webhook.event != RECEIVE_MESSAGE:
            return JSONResponse(Ignored(event=webhook.event).model_dump())
        message = private_message(webhook)
        dedup = dedup_key(request.headers.get(MSG_ID_HEADER), webhook.log_id, message)
    except DouyinPayloadError as exc:
        raise InvalidPayload(str(exc)) from exc
    except ValidationError as exc:
        raise InvalidPayload(describe(exc, "content")) from exc
    event = to_contact_event(app_id, dedup, webhook, message, datetime.now(UTC))
    await publish(channels, event)
    return accepted(event, status_code=200)


DOUYIN = Platform(section="douyin", account=DouyinApp, segment="douyin", noun="Douyin app", router=router, setup=setup)
