"""What every webhook endpoint does the same way: bounded body reads, UTF-8, JSON, metrics, the 2xx."""

import uuid
from typing import Literal, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, ValidationError

from contracts import ContactEvent
from contracts.text import validate_json
from services.channels.common.runtime import Channels
from services.channels.exceptions import BodyTooLarge, InvalidPayload, MalformedBody, UnsupportedMedia

M = TypeVar("M", bound=BaseModel)

WEBHOOKS = Counter("kefu_channels_webhooks_total", "Webhooks accepted and published", ["channel"])


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
    """``body`` as text, or a 400 naming the first bad byte."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"body is not valid UTF-8 (byte {exc.start})") from exc


def parse_json(model: type[M], text: str) -> M:
    """``text`` as ``model``: a 400 if it is not JSON, a 422 naming every invalid field.

    A lone surrogate escaped in the JSON (``"\\ud83d"``, half an emoji) is accepted and becomes U+FFFD
    (``contracts.text``), like a NUL: text the database cannot store never makes a message undeliverable.
    """
    try:
        return validate_json(model, text)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise MalformedBody(f"body is not JSON: {errors[0]['msg']}") from exc
        raise InvalidPayload(describe(exc)) from exc


def media_type(request: Request) -> str:
    """The request's media type, lower-cased, without parameters."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_media_type(request: Request, *accepted: str) -> str:
    """The request's media type, or a 415 naming what is accepted."""
    found = media_type(request)
    if found not in accepted:
        raise UnsupportedMedia(f"expected {' or '.join(accepted)}, got {found or 'no content type'}")
    return found


async def publish(channels: Channels, *events: ContactEvent) -> None:
    """Put ``events`` on the broker, in order; return only once the broker holds every one."""
    for event in events:
        await channels.publisher.publish(event)
        WEBHOOKS.labels(event.channel.value).inc()


def describe(exc: ValidationError, *prefix: str) -> str:
    """One line naming every invalid field of a payload (for a 422's ``detail``)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in (*prefix, *err['loc'])) or 'body'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )


class Accepted(BaseModel):
    """The answer to a webhook whose contact is on the broker."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)  # always sent, so documented so
    status: Literal["accepted"] = "accepted"
    event_id: uuid.UUID


def accepted(event: ContactEvent, status_code: int = 202) -> JSONResponse:
    """``Accepted`` for ``event``: a 202 for platforms that take any 2xx, or the ``status_code`` the platform wants."""
    return JSONResponse(Accepted(event_id=event.event_id).model_dump(mode="json"), status_code=status_code)
