"""Web chat: ``POST /webhooks/webchat/{site_id}``, Standard Webhooks signatures."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from services.channels.common.http import (
    Accepted,
    accepted,
    decode_utf8,
    parse_json,
    publish,
    read_body,
    require_media_type,
)
from services.channels.common.runtime import Channels, Platform, channels_of
from services.channels.webchat.account import WebchatSite
from services.channels.webchat.signature import StandardWebhookVerifier
from services.channels.webchat.webhook import WebchatWebhook, to_contact_event

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def setup(site: WebchatSite, _: Channels) -> StandardWebhookVerifier:
    """The site's verifier, which accepts any of its secrets (rotation)."""
    return StandardWebhookVerifier([s.get_secret_value() for s in site.secrets])


@router.post(
    "/webchat/{site_id}",
    status_code=202,
    response_model=Accepted,
    summary="A web chat message, signed with Standard Webhooks",
    responses={
        400: {"description": "not UTF-8 or not JSON"},
        401: {"description": "signature missing, wrong or stale"},
        404: {"description": "unknown site"},
        413: {"description": "body too large"},
        415: {"description": "not application/json"},
        422: {"description": "JSON that is not a web chat message"},
        503: {"description": "the broker is unavailable; retry"},
    },
)
async def webchat(site_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]) -> JSONResponse:
    verifier = channels.account(WEBCHAT, site_id)
    require_media_type(request, "application/json")
    text = decode_utf8(await read_body(request, channels.settings.max_body_bytes))
    webhook_id = verifier.verify(text, request.headers)
    body = parse_json(WebchatWebhook, text)
    event = to_contact_event(site_id, webhook_id, body, datetime.now(UTC))
    await publish(channels, event)
    return accepted(event)


WEBCHAT = Platform(
    section="webchat", account=WebchatSite, segment="webchat", noun="web chat site", router=router, setup=setup
)
