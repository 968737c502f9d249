"""Phone (Twilio Voice): ``POST /webhooks/phone/{line_id}`` (the voice URL: an incoming call, answered
with TwiML that queues the caller) and ``POST /webhooks/phone/{line_id}/status`` (the call status
callback: a call that ended becomes an abandonment). Both are signed with ``X-Twilio-Signature``."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError

from services.channels.common.http import decode_utf8, describe, publish, read_body, require_media_type
from services.channels.common.runtime import Channels, Platform, channels_of
from services.channels.exceptions import InvalidPayload
from services.channels.phone.account import PhoneLine
from services.channels.phone.calls import (
    ENDED,
    CallStatus,
    TwilioCall,
    ended_call,
    incoming_call,
    normalize_number,
)
from services.channels.phone.twilio import SIGNATURE_HEADER, TwilioRequestValidator, parse_form
from services.channels.phone.twiml import TWIML_MEDIA_TYPE, enqueue_twiml

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

FORM = "application/x-www-form-urlencoded"
STARTING = frozenset({CallStatus.QUEUED, CallStatus.INITIATED, CallStatus.RINGING, CallStatus.IN_PROGRESS})
"""Statuses of a call's first request to the voice URL (``ringing`` for calls to a Twilio number)."""


@dataclass(frozen=True, slots=True)
class LineState:
    """Everything a line's webhooks need, built once at startup."""

    id: str
    validator: TwilioRequestValidator
    numbers: frozenset[str]
    region: str | None
    twiml: bytes


def setup(line: PhoneLine, _: Channels) -> LineState:
    """The line's signature validator, its numbers and its TwiML answer."""
    return LineState(
        id=line.id,
        validator=TwilioRequestValidator(
            [t.get_secret_value() for t in (line.auth_token, line.secondary_auth_token) if t is not None],
            line.public_url,
            trust_forwarded_headers=line.trust_forwarded_headers,
        ),
        numbers=frozenset(line.numbers),
        region=line.region,
        twiml=enqueue_twiml(line),
    )


ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "not UTF-8, or broken percent-encoding"},
    401: {"description": "X-Twilio-Signature missing or not matching the URL and parameters"},
    404: {"description": "unknown line"},
    413: {"description": "body too large"},
    415: {"description": "not application/x-www-form-urlencoded"},
    422: {"description": "signed, but not a usable Twilio call webhook (CallSid, CallStatus, number)"},
    503: {"description": "the broker is unavailable; Twilio retries or plays its error"},
}


@router.post(
    "/phone/{line_id}",
    summary="An incoming call (Twilio voice URL); answered with TwiML that queues the caller",
    response_class=Response,
    responses={200: {"description": "TwiML", "content": {TWIML_MEDIA_TYPE: {}}}, **ERRORS},
)
async def phone_call(line_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]) -> Response:
    line, call = await _signed_call(line_id, request, channels)
    if call.call_status not in STARTING:
        raise InvalidPayload(
            f"CallStatus {call.call_status} on the voice URL: a call that ended belongs on "
            f"/webhooks/phone/{line_id}/status"
        )
    await publish(channels, incoming_call(line.id, line.region, call, datetime.now(UTC)))
    return Response(content=line.twiml, media_type=TWIML_MEDIA_TYPE)


@router.post(
    "/phone/{line_id}/status",
    status_code=204,
    summary="A call status callback; a call that ended becomes an abandonment",
    response_class=Response,
    responses={204: {"description": "recorded (or not an ending, so nothing to record)"}, **ERRORS},
)
async def phone_status(line_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]) -> Response:
    line, call = await _signed_call(line_id, request, channels)
    if call.call_status in ENDED:
        await publish(channels, ended_call(line.id, line.region, call, datetime.now(UTC)))
    return Response(status_code=204)


async def _signed_call(line_id: str, request: Request, channels: Channels) -> tuple[LineState, TwilioCall]:
    """The line and the call of a correctly signed Twilio webhook; a 4xx otherwise."""
    line = channels.account(PHONE, line_id)
    require_media_type(request, FORM)
    params = parse_form(decode_utf8(await read_body(request, channels.settings.max_body_bytes)))
    scope = request.scope
    raw_path = scope.get("raw_path")
    path = raw_path.split(b"?", 1)[0].decode("latin-1") if raw_path else scope["path"]
    url = line.validator.url(path, scope["query_string"].decode("latin-1"), request.headers)
    line.validator.verify(url, params, request.headers.get(SIGNATURE_HEADER))
    fields = dict(params)
    if len(fields) != len(params):
        repeated = sorted({name for name, _ in params if sum(1 for n, _ in params if n == name) > 1})
        raise InvalidPayload(f"parameter(s) given more than once: {', '.join(repeated)}")
    try:
        call = TwilioCall.model_validate(fields)
    except ValidationError as exc:
        raise InvalidPayload(describe(exc)) from exc
    if line.numbers:
        number = normalize_number(call.line_address, line.region)
        if number not in line.numbers:
            side = "From" if call.outbound else "To"
            raise InvalidPayload(f"{side} {number} is not a number of phone line {line_id!r}")
    return line, call


PHONE = Platform(section="phone", account=PhoneLine, segment="phone", noun="phone line", router=router, setup=setup)
