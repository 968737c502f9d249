"""WeCom customer service (微信客服) callbacks: ``/webhooks/wecom-kf/{account_id}``. A callback is only a
doorbell: the new messages are pulled with ``kf/sync_msg`` from the cursor kept in PostgreSQL, published, and only
then is the doorbell answered ``success``."""

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from contracts import ContactEvent
from services.channels.common.http import publish
from services.channels.common.runtime import Channels, Platform, channels_of
from services.channels.common.store import load_cursor, save_cursor
from services.channels.exceptions import InvalidPayload, StoreUnavailable
from services.channels.wechat.accounts import WecomKfAccount
from services.channels.wechat.callbacks import ERRORS, decrypt, query, success, xml_fields
from services.channels.wechat.crypto import WechatCrypto, check_timestamp
from services.channels.wechat.kf_api import WecomKfApi
from services.channels.wechat.kf_messages import KF_DOORBELL, KfMessage, kf_contact_event

log = logging.getLogger(__name__)
T = TypeVar("T")

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

MAX_PAGES = 100
"""Pages of ``kf/sync_msg`` pulled per doorbell at most (100 000 messages); the rest on the next one."""


@dataclass(slots=True)
class KfAccount:
    """A corp's callback cipher and API client, and the locks that keep its pulls from racing on one cursor."""

    account: WecomKfAccount
    crypto: WechatCrypto
    api: WecomKfApi
    pulls: dict[str, asyncio.Lock] = field(default_factory=dict)
    """One pull at a time per open_kfid in this process (they share a cursor)."""


def setup(account: WecomKfAccount, channels: Channels) -> KfAccount:
    """The corp's callback cipher and its API client (with its cached access token)."""
    crypto = WechatCrypto(
        account.token.get_secret_value(), account.encoding_aes_key.get_secret_value(), account.corp_id
    )
    api = WecomKfApi(
        channels.http, api_base=account.api_base, corp_id=account.corp_id, secret=account.secret.get_secret_value()
    )
    return KfAccount(account, crypto, api)


@router.get(
    "/wecom-kf/{account_id}",
    response_class=PlainTextResponse,
    summary="WeCom callback URL check: answers the decrypted echostr",
    responses={k: v for k, v in ERRORS.items() if k in (400, 401, 404)},
)
async def wecom_kf_url_check(
    account_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]
) -> PlainTextResponse:
    kf = channels.account(WECOM_KF, account_id)
    msg_signature, timestamp, nonce, echostr = query(request, "msg_signature", "timestamp", "nonce", "echostr")
    check_timestamp(timestamp, now=time.time(), tolerance=channels.settings.signature_tolerance_seconds)
    echostr = echostr.replace(" ", "+")  # a '+' that reached us not percent-encoded
    kf.crypto.verify(msg_signature, timestamp, nonce, echostr)
    return PlainTextResponse(kf.crypto.decrypt(echostr))


@router.post(
    "/wecom-kf/{account_id}",
    response_class=PlainTextResponse,
    summary="A WeCom customer service doorbell: pulls the new messages, publishes them, answers success",
    responses=ERRORS,
)
async def wecom_kf_doorbell(
    account_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]
) -> PlainTextResponse:
    kf = channels.account(WECOM_KF, account_id)
    msg_signature, timestamp, nonce = query(request, "msg_signature", "timestamp", "nonce")
    check_timestamp(timestamp, now=time.time(), tolerance=channels.settings.signature_tolerance_seconds)
    envelope = await xml_fields(request, channels)
    fields = decrypt(kf.crypto, envelope, msg_signature, timestamp, nonce)
    if fields.get("Event", "").strip() != KF_DOORBELL:
        return success()  # other WeCom events on this URL carry no customer message
    token, open_kfid = fields.get("Token", "").strip(), fields.get("OpenKfId", "").strip()
    if not token or not open_kfid:
        raise InvalidPayload("kf_msg_or_event without <Token> or <OpenKfId>")
    await _pull(channels, kf, token=token, open_kfid=open_kfid)
    return success()


async def _pull(channels: Channels, kf: KfAccount, *, token: str, open_kfid: str) -> int:
    """Pull, publish and advance the cursor page by page until ``has_more`` is 0; return how many events."""
    scope = f"wecom-kf:{kf.account.id}:{open_kfid}"
    lock = kf.pulls.setdefault(open_kfid, asyncio.Lock())
    published = 0
    async with lock:
        cursor = await _store(load_cursor(channels.engine, scope)) or ""
        for _ in range(MAX_PAGES):
            page = await kf.api.sync_msg(cursor=cursor, token=token, open_kfid=open_kfid)
            events = _events(kf.account.id, page.msg_list, datetime.now(UTC))
            await publish(channels, *events)
            published += len(events)
            advanced = bool(page.next_cursor) and page.next_cursor != cursor
            if advanced:
                await _store(save_cursor(channels.engine, scope, page.next_cursor))
                cursor = page.next_cursor
            if not page.has_more or not advanced:
                break
        else:
            log.warning("wecom-kf %s: more than %d pages in one pull; the rest comes next time", scope, MAX_PAGES)
    return published


def _events(account_id: str, msg_list: list[object], received_at: datetime) -> list[ContactEvent]:
    """The contact events of one page. A message that does not parse is logged and skipped: failing the doorbell
    for it would never move the cursor past it, and every message after it would wait forever."""
    events: list[ContactEvent] = []
    for item in msg_list:
        try:
            event = kf_contact_event(account_id, KfMessage.model_validate(item), received_at)
        except (ValidationError, InvalidPayload) as exc:
            msgid = item.get("msgid") if isinstance(item, dict) else None
            log.warning("wecom-kf %s: skipped malformed message %s (%s)", account_id, msgid, type(exc).__name__)
            continue
        if event is not None:
            events.append(event)
    return events


async def _store(operation: Awaitable[T]) -> T:
    """``operation`` on the cursor store; a database failure is a 503 so that WeCom retries."""
    try:
        return await operation
    except (SQLAlchemyError, OSError) as exc:
        raise StoreUnavailable(f"the cursor store failed: {type(exc).__name__}") from exc


WECOM_KF = Platform(
    section="wecom_kf",
    account=WecomKfAccount,
    segment="wecom-kf",
    noun="WeCom customer service account",
    router=router,
    setup=setup,
)
