"""Phone: the calls of a line, as Twilio Voice webhooks report them, normalized to contact events.

A call is one conversation (keyed by its ``CallSid``). The first request Twilio makes to the line's
voice URL becomes a ``message`` event ("incoming call"); a terminal status callback (``completed``,
``busy``, ``no-answer``, ``canceled``, ``failed``) becomes an ``abandoned`` event on the same
conversation, which the router applies only if the caller was never served. The dedup key of both
is ``CallSid:CallStatus``.

Callers are identified by their E.164 number. Twilio Client and SIP callers keep their
``client:…`` / ``sip:…`` identity; withheld or unparseable caller ids (``anonymous``, Twilio's
keypad-spelled placeholders such as ``+266696687`` = ANONYMOUS) get ``anonymous:<CallSid>``, so two
unknown callers are never merged into one customer.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import Channel, ContactEvent, ContactEventKind, Customer, Message, identities
from services.channels.common.ids import conversation_key, event_id

CALL_SID = r"^CA[0-9a-fA-F]{32}$"


class CallStatus(StrEnum):
    """Twilio's ``CallStatus`` values."""

    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"
    FAILED = "failed"


ENDED = frozenset({CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.CANCELED, CallStatus.FAILED})
"""Statuses after which the call is over: the caller left (or was served and hung up)."""


class TwilioCall(BaseModel):
    """The parameters of a Twilio voice webhook or call status callback that kefu reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    call_sid: str = Field(alias="CallSid", pattern=CALL_SID)
    call_status: CallStatus = Field(alias="CallStatus")
    account_sid: str | None = Field(default=None, alias="AccountSid", max_length=64)
    direction: str = Field(default="inbound", alias="Direction", max_length=32)
    from_: str = Field(default="", alias="From", max_length=512)
    to: str = Field(default="", alias="To", max_length=512)
    caller_name: str | None = Field(default=None, alias="CallerName", max_length=512)
    forwarded_from: str | None = Field(default=None, alias="ForwardedFrom", max_length=512)
    from_city: str | None = Field(default=None, alias="FromCity", max_length=256)
    from_state: str | None = Field(default=None, alias="FromState", max_length=256)
    from_country: str | None = Field(default=None, alias="FromCountry", max_length=8)
    call_duration: str | None = Field(default=None, alias="CallDuration", max_length=16)
    timestamp: str | None = Field(default=None, alias="Timestamp", max_length=64)

    @property
    def outbound(self) -> bool:
        """Whether kefu's side placed the call (the customer is then ``To``)."""
        return self.direction.startswith("outbound")

    @property
    def customer_address(self) -> str:
        return self.to if self.outbound else self.from_

    @property
    def line_address(self) -> str:
        return self.from_ if self.outbound else self.to


WITHHELD_NUMBERS = {
    "+266696687": "anonymous",  # the keypad spelling of each word
    "+7378742833": "restricted",
    "+2562533": "blocked",
    "+8656696": "unknown",
    "+86282452253": "unavailable",  # looks like a Chengdu number: must be caught before parsing
}
"""Placeholders Twilio puts in ``From`` when the caller id is withheld."""

WITHHELD_WORDS = frozenset(
    {"", "anonymous", "restricted", "blocked", "unknown", "unavailable", "private", "withheld", "client:anonymous"}
)

CallerKind = Literal["number", "client", "sip", "withheld", "unparseable"]


class Caller(BaseModel):
    """Who called, as kefu identifies them."""

    model_config = ConfigDict(frozen=True)
    platform_id: str
    kind: CallerKind


def e164_or_none(raw: str, region: str | None) -> str | None:
    """``raw`` as an E.164 number, or ``None`` if it is not a possible phone number."""
    try:
        return identities.phone_number(raw, region)
    except identities.InvalidIdentity:
        return None


def identify_caller(raw: str, call_sid: str, region: str | None) -> Caller:
    """The customer id of a caller, in the canonical form of ``contracts.identities.phone``: E.164,
    ``client:…``, ``sip:…`` or ``anonymous:<CallSid>``."""
    value = raw.strip()
    lowered = value.lower()
    if value in WITHHELD_NUMBERS or lowered in WITHHELD_WORDS or lowered.startswith("anonymous:"):
        return Caller(platform_id=f"anonymous:{call_sid}", kind="withheld")
    try:
        platform_id = identities.phone(value, region)
    except identities.InvalidIdentity:
        return Caller(platform_id=f"anonymous:{call_sid}", kind="unparseable")
    kind: CallerKind = "number" if platform_id.startswith("+") else "client" if lowered.startswith("client:") else "sip"
    return Caller(platform_id=platform_id, kind=kind)


def normalize_number(raw: str, region: str | None) -> str:
    """A number for metadata: E.164 when it is one, else as given."""
    return e164_or_none(raw, region) or raw.strip()


def incoming_call(line_id: str, region: str | None, call: TwilioCall, received_at: datetime) -> ContactEvent:
    """The contact event of a call's first request to the voice URL."""
    return _event(line_id, region, call, ContactEventKind.MESSAGE, "incoming call", received_at, received_at)


def ended_call(line_id: str, region: str | None, call: TwilioCall, received_at: datetime) -> ContactEvent:
    """The abandonment event of a terminal status callback."""
    occurred_at = _timestamp(call.timestamp) or received_at
    text = f"call {call.call_status}"
    return _event(line_id, region, call, ContactEventKind.ABANDONED, text, occurred_at, received_at)


def _event(
    line_id: str,
    region: str | None,
    call: TwilioCall,
    kind: ContactEventKind,
    text: str,
    occurred_at: datetime,
    received_at: datetime,
) -> ContactEvent:
    caller = identify_caller(call.customer_address, call.call_sid, region)
    dedup = f"{call.call_sid}:{call.call_status}"
    metadata = _metadata(call, caller, region)
    if kind is ContactEventKind.ABANDONED and call.call_duration:
        metadata["call_duration"] = call.call_duration
    return ContactEvent(
        event_id=event_id(Channel.PHONE, line_id, dedup),
        kind=kind,
        channel=Channel.PHONE,
        account_id=line_id,
        conversation_key=conversation_key(Channel.PHONE, line_id, call.call_sid),
        dedup_key=dedup,
        customer=Customer(platform_id=caller.platform_id, display_name=_display_name(call.caller_name)),
        message=Message(text=text),
        occurred_at=occurred_at,
        received_at=received_at,
        metadata=metadata,
    )


def _metadata(call: TwilioCall, caller: Caller, region: str | None) -> dict[str, str]:
    optional: Mapping[str, str | None] = {
        "account_sid": call.account_sid,
        "to": normalize_number(call.to, region) if call.to else None,
        "caller_raw": call.customer_address.strip()[:256] if caller.kind == "unparseable" else None,
        "caller_city": call.from_city,
        "caller_state": call.from_state,
        "caller_country": call.from_country,
        "forwarded_from": normalize_number(call.forwarded_from, region) if call.forwarded_from else None,
    }
    metadata = {
        "call_sid": call.call_sid,
        "call_status": str(call.call_status),
        "direction": call.direction,
        "caller_id": caller.kind,
    }
    metadata.update({key: value for key, value in optional.items() if value})
    return metadata


def _display_name(name: str | None) -> str | None:
    name = (name or "").strip()
    return name[:256] or None


def _timestamp(value: str | None) -> datetime | None:
    """Twilio's RFC 2822 ``Timestamp``, or ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
