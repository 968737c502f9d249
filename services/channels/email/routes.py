"""Email: ``POST /webhooks/email/{inbox_id}`` takes what the inbox's provider posts:

* ``sendgrid``: SendGrid Inbound Parse ``multipart/form-data`` (parsed fields, or ``email`` = the raw
  MIME with "send raw"), HTTP Basic auth;
* ``mailgun``: a Mailgun route's ``multipart/form-data`` or ``x-www-form-urlencoded`` post, signed
  (HMAC-SHA256 over timestamp + token, ±tolerance, each token once);
* ``raw``: an RFC 5322 message as ``message/rfc822``, HTTP Basic auth or a bearer token.

The answer is 200 once the contact is on the broker (both providers take any 2xx), 503 when it is
not (both retry).
"""

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from contracts import ContactEvent
from services.channels.common.http import Accepted, accepted, publish, read_body, require_media_type
from services.channels.common.runtime import Channels, Platform, channels_of
from services.channels.common.store import first_use
from services.channels.email.auth import (
    HeaderAuth,
    MailgunVerifier,
    release_token,
)
from services.channels.email.forms import Form, parse_multipart, parse_urlencoded
from services.channels.email.inbox import EmailInbox, EmailProvider, MimeLimits
from services.channels.email.mime import EmailFacts, parse_mime
from services.channels.email.posts import mailgun_facts, sendgrid_facts
from services.channels.email.threads import to_contact_event
from services.channels.exceptions import BrokerUnavailable, ReplayedDelivery, StoreUnavailable

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

FORM = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"
RFC822 = "message/rfc822"
MEDIA_TYPES = {
    EmailProvider.SENDGRID: (FORM,),
    EmailProvider.MAILGUN: (FORM, URLENCODED),
    EmailProvider.RAW: (RFC822,),
}
INLINE_PARSE_BYTES = 256 * 1024
"""Bodies up to this size are parsed on the event loop; larger ones in a worker thread."""
KEEP = {EmailProvider.SENDGRID: frozenset({"email"}), EmailProvider.MAILGUN: frozenset({"body-mime"})}


@dataclass(frozen=True, slots=True)
class Inbox:
    """Everything a post to one inbox needs, built once at startup."""

    config: EmailInbox
    media_types: tuple[str, ...]
    body_limit: int
    limits: MimeLimits
    keep: frozenset[str]
    auth: HeaderAuth | None
    mailgun: MailgunVerifier | None
    replay_scope: str
    replay_ttl: timedelta


def setup(config: EmailInbox, channels: Channels) -> Inbox:
    """The inbox's credentials, Mailgun verifier, limits and replay scope."""
    basic = config.basic_auth
    bearer = config.bearer_token
    auth = (
        HeaderAuth(
            basic=(basic.username, basic.password.get_secret_value()) if basic else None,
            bearer=bearer.get_secret_value() if bearer else None,
        )
        if basic or bearer
        else None
    )
    tolerance = channels.settings.signature_tolerance_seconds
    key = config.mailgun_signing_key
    scope = f"mailgun:{config.id}"
    if len(scope) > 128:  # the replay table's scope column
        scope = f"mailgun:sha256:{hashlib.sha256(config.id.encode()).hexdigest()[:48]}"
    return Inbox(
        config=config,
        media_types=MEDIA_TYPES[config.provider],
        body_limit=config.max_body_bytes or channels.settings.max_body_bytes,
        limits=config.limits,
        keep=KEEP.get(config.provider, frozenset()),
        auth=auth,
        mailgun=MailgunVerifier(key.get_secret_value(), tolerance_seconds=tolerance) if key else None,
        replay_scope=scope,
        replay_ttl=timedelta(seconds=2 * tolerance),
    )


@router.post(
    "/email/{inbox_id}",
    response_model=Accepted,
    summary="An inbound email, posted by SendGrid Inbound Parse, a Mailgun route or as raw RFC 5322",
    responses={
        200: {"description": "the contact is on the broker"},
        400: {"description": "malformed body: no multipart boundary, unparseable form or MIME, MIME bomb"},
        401: {"description": "credentials or Mailgun signature missing or wrong; stale Mailgun timestamp"},
        404: {"description": "unknown inbox"},
        409: {"description": "Mailgun token already used (a replay)"},
        413: {"description": "body or one attachment too large"},
        415: {"description": "not the media type the inbox's provider posts"},
        422: {"description": "an email without a valid sender address"},
        503: {"description": "the broker (or the replay store) is unavailable; retry"},
    },
)
async def email(inbox_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]) -> JSONResponse:
    inbox = channels.account(EMAIL, inbox_id)
    if inbox.auth is not None:
        inbox.auth.check(request.headers.get("authorization"))
    media_type = require_media_type(request, *inbox.media_types)
    body = await read_body(request, inbox.body_limit)
    received_at = datetime.now(UTC)
    content_type = request.headers.get("content-type", "")
    if len(body) <= INLINE_PARSE_BYTES:
        event, token = _normalize(inbox, media_type, content_type, body, received_at)
    else:  # parsing megabytes of MIME would hold up every other webhook
        event, token = await run_in_threadpool(_normalize, inbox, media_type, content_type, body, received_at)
    if token is not None:
        await _first_use(channels, inbox, token)
    try:
        await publish(channels, event)
    except BrokerUnavailable:
        if token is not None:
            await release_token(channels.engine, scope=inbox.replay_scope, token=token)
        raise
    return accepted(event, status_code=200)


def _normalize(
    inbox: Inbox, media_type: str, content_type: str, body: bytes, received_at: datetime
) -> tuple[ContactEvent, str | None]:
    """The contact event of a post (and its Mailgun token, verified but not yet marked used)."""
    token: str | None = None
    provider = inbox.config.provider
    facts: EmailFacts
    if provider is EmailProvider.RAW:
        facts = parse_mime(body, inbox.limits)
    else:
        form = _form(inbox, media_type, content_type, body)
        if provider is EmailProvider.SENDGRID:
            facts = sendgrid_facts(form.fields, form.files, inbox.limits)
        else:
            token = _mailgun_token(inbox, form)
            facts = mailgun_facts(form.fields, form.files, inbox.limits)
    return to_contact_event(inbox.config, facts, received_at), token


def _form(inbox: Inbox, media_type: str, content_type: str, body: bytes) -> Form:
    if media_type == URLENCODED:
        return parse_urlencoded(body, max_fields=inbox.limits.max_parts)
    return parse_multipart(
        body,
        content_type,
        max_parts=inbox.limits.max_parts,
        max_file_bytes=inbox.limits.max_attachment_bytes,
        keep=inbox.keep,
    )


def _field(form: Form, name: str) -> str | None:
    value = form.fields.get(name)
    return value.decode("utf-8", "replace").strip() if value is not None else None


def _mailgun_token(inbox: Inbox, form: Form) -> str:
    assert inbox.mailgun is not None
    return inbox.mailgun.verify(
        _field(form, "timestamp"), _field(form, "token"), _field(form, "signature"), now=time.time()
    )


async def _first_use(channels: Channels, inbox: Inbox, token: str) -> None:
    try:
        fresh = await first_use(channels.engine, scope=inbox.replay_scope, token=token, ttl=inbox.replay_ttl)
    except (SQLAlchemyError, OSError) as exc:
        raise StoreUnavailable(f"replay protection is unavailable ({type(exc).__name__}); retry later") from exc
    if not fresh:
        raise ReplayedDelivery("this Mailgun token was already used: the post is a replay")


EMAIL = Platform(section="email", account=EmailInbox, segment="email", noun="email inbox", router=router, setup=setup)
