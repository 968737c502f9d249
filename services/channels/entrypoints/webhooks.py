"""Webhook endpoints: verify, parse, normalize, publish, and only then acknowledge."""

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import ValidationError

from contracts import Channel
from services.channels.bootstrap import Channels
from services.channels.domain.webchat import WebchatWebhook, to_contact_event
from services.channels.exceptions import (
    BodyTooLarge,
    InvalidPayload,
    MalformedBody,
    UnknownAccount,
    UnsupportedMedia,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

WEBHOOKS = Counter("kefu_channels_webhooks_total", "Webhooks received", ["channel", "outcome"])


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"body is not valid UTF-8 (byte {exc.start})") from exc


@router.post(
    "/webchat/{site_id}",
    status_code=202,
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
async def webchat(site_id: str, request: Request) -> JSONResponse:
    channels: Channels = request.app.state.channels
    verifier = channels.webchat_verifiers.get(site_id)
    if verifier is None:
        raise UnknownAccount(f"no web chat site {site_id!r}")
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        raise UnsupportedMedia(f"expected application/json, got {content_type or 'no content type'}")
    text = decode_utf8(await read_body(request, channels.settings.max_body_bytes))
    webhook_id = verifier.verify(text, request.headers)
    try:
        body = WebchatWebhook.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise MalformedBody(f"body is not JSON: {errors[0]['msg']}") from exc
        raise InvalidPayload(_describe(errors)) from exc
    event = to_contact_event(site_id, webhook_id, body, datetime.now(UTC))
    await channels.publisher.publish(event)
    WEBHOOKS.labels(Channel.WEBCHAT.value, "accepted").inc()
    return JSONResponse({"status": "accepted", "event_id": str(event.event_id)}, status_code=202)


def _describe(errors: list) -> str:  # type: ignore[type-arg]
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in errors)
