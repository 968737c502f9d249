"""WeChat: Official Account callbacks (``/webhooks/wechat/{account_id}``) and WeCom customer
service doorbells (``/webhooks/wecom-kf/{account_id}``), both answered ``success`` only once the
customer messages are on the broker.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from contracts import ContactEvent
from services.channels.common.http import decode_utf8, describe, publish, read_body, require_media_type
from services.channels.common.runtime import Channels, channels_of
from services.channels.common.store import load_cursor, save_cursor
from services.channels.exceptions import BadSignature, InvalidPayload, MalformedBody, StoreUnavailable, UnknownAccount
from services.channels.wechat.crypto import WechatCrypto, check_timestamp, signature_matches
from services.channels.wechat.kf_api import WecomKfApi
from services.channels.wechat.messages import (
    KF_DOORBELL,
    KfMessage,
    WechatAccount,
    WecomKfAccount,
    kf_contact_event,
    official_account_event,
    parse_xml,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

XML_TYPES = ("text/xml", "application/xml")
MAX_PAGES = 100
"""Pages of ``kf/sync_msg`` pulled per doorbell at most (100 000 messages); the rest on the next one."""


@dataclass(frozen=True, slots=True)
class OfficialAccount:
    account: WechatAccount
    token: str
    crypto: WechatCrypto | None


@dataclass(slots=True)
class KfAccount:
    account: WecomKfAccount
    crypto: WechatCrypto
    api: WecomKfApi
    pulls: dict[str, asyncio.Lock] = field(default_factory=dict)
    """One pull at a time per open_kfid in this process (they share a cursor)."""


@dataclass(frozen=True, slots=True)
class WechatAdapters:
    official: Mapping[str, OfficialAccount]
    kf: Mapping[str, KfAccount]
    tolerance: int


def setup(channels: Channels) -> WechatAdapters:
    """Tokens and ciphers of every Official Account; ciphers and API clients of every WeCom corp."""
    official = {}
    for account in channels.config.wechat:
        token = account.token.get_secret_value()
        key = account.encoding_aes_key
        crypto = WechatCrypto(token, key.get_secret_value(), account.appid) if key is not None else None
        official[account.id] = OfficialAccount(account, token, crypto)
    kf = {
        account.id: KfAccount(
            account,
            WechatCrypto(
                account.token.get_secret_value(), account.encoding_aes_key.get_secret_value(), account.corp_id
            ),
            WecomKfApi(
                channels.http,
                api_base=account.api_base,
                corp_id=account.corp_id,
                secret=account.secret.get_secret_value(),
            ),
        )
        for account in channels.config.wecom_kf
    }
    return WechatAdapters(official, kf, channels.settings.signature_tolerance_seconds)


def _state(channels: Channels) -> WechatAdapters:
    state: WechatAdapters = channels.adapters["wechat"]
    return state


def _query(request: Request, *names: str) -> list[str]:
    """The named query parameters, or a 401 naming those missing."""
    params = request.query_params
    missing = [name for name in names if not params.get(name)]
    if missing:
        raise BadSignature(f"missing query parameter(s): {', '.join(missing)}")
    return [params[name] for name in names]


def _success() -> PlainTextResponse:
    """WeChat's documented "received, no reply" answer."""
    return PlainTextResponse("success")


ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "not UTF-8, not XML, a DOCTYPE/entity (XXE), or an undecryptable Encrypt"},
    401: {"description": "signature missing or wrong, timestamp stale, or encrypted for another appid/corp id"},
    404: {"description": "unknown account"},
    413: {"description": "body too large"},
    415: {"description": "not text/xml or application/xml"},
    422: {"description": "XML that is not a WeChat message"},
    503: {"description": "the broker (or, for WeCom, the WeCom API or cursor store) is unavailable; retried"},
}


# --- Official Accounts --------------------------------------------------------------------------


def _official(channels: Channels, account_id: str) -> tuple[WechatAdapters, OfficialAccount]:
    state = _state(channels)
    oa = state.official.get(account_id)
    if oa is None:
        raise UnknownAccount(f"no WeChat Official Account {account_id!r}")
    return state, oa


def _verify_official(request: Request, state: WechatAdapters, oa: OfficialAccount) -> tuple[str, str]:
    signature, timestamp, nonce = _query(request, "signature", "timestamp", "nonce")
    check_timestamp(timestamp, now=time.time(), tolerance=state.tolerance)
    if not signature_matches(signature, oa.token, timestamp, nonce):
        raise BadSignature("signature does not match")
    return timestamp, nonce


@router.get(
    "/wechat/{account_id}",
    response_class=PlainTextResponse,
    summary="WeChat Official Account server URL check: answers echostr",
    responses={k: v for k, v in ERRORS.items() if k in (401, 404)},
)
async def wechat_url_check(
    account_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]
) -> PlainTextResponse:
    state, oa = _official(channels, account_id)
    timestamp, nonce = _verify_official(request, state, oa)
    (echostr,) = _query(request, "echostr")
    msg_signature = request.query_params.get("msg_signature")
    if msg_signature is not None and not signature_matches(msg_signature, oa.token, timestamp, nonce, echostr):
        raise BadSignature("msg_signature does not match")
    return PlainTextResponse(echostr)


@router.post(
    "/wechat/{account_id}",
    response_class=PlainTextResponse,
    summary="A WeChat Official Account message or event (plain or safe mode): answers success",
    responses=ERRORS,
)
async def wechat_message(
    account_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]
) -> PlainTextResponse:
    state, oa = _official(channels, account_id)
    timestamp, nonce = _verify_official(request, state, oa)
    encrypt_type = request.query_params.get("encrypt_type", "raw").lower()
    if encrypt_type not in ("raw", "aes"):
        raise MalformedBody(f"encrypt_type {encrypt_type[:16]!r} is not supported (raw or aes)")
    if encrypt_type == "raw" and oa.account.require_encryption:
        raise BadSignature("this account accepts only safe-mode messages (encrypt_type=aes)")
    require_media_type(request, *XML_TYPES)
    fields = parse_xml(decode_utf8(await read_body(request, channels.settings.max_body_bytes)))
    if encrypt_type == "aes":
        if oa.crypto is None:
            raise BadSignature("encrypt_type=aes, but no encoding_aes_key is configured for this account")
        (msg_signature,) = _query(request, "msg_signature")
        fields = _decrypt(oa.crypto, fields, msg_signature, timestamp, nonce)
    try:
        event = official_account_event(oa.account, fields, datetime.now(UTC))
    except ValidationError as exc:
        raise InvalidPayload(describe(exc)) from exc
    if event is not None:
        await publish(channels, event)
    return _success()


def _decrypt(
    crypto: WechatCrypto, envelope: Mapping[str, str], msg_signature: str, timestamp: str, nonce: str
) -> dict[str, str]:
    encrypted = envelope.get("Encrypt", "").strip()
    if not encrypted:
        raise InvalidPayload("<Encrypt> is missing or empty")
    crypto.verify(msg_signature, timestamp, nonce, encrypted)
    return parse_xml(crypto.decrypt(encrypted))


# --- WeCom customer service ---------------------------------------------------------------------


def _kf(channels: Channels, account_id: str) -> tuple[WechatAdapters, KfAccount]:
    state = _state(channels)
    kf = state.kf.get(account_id)
    if kf is None:
        raise UnknownAccount(f"no WeCom customer service account {account_id!r}")
    return state, kf


@router.get(
    "/wecom-kf/{account_id}",
    response_class=PlainTextResponse,
    summary="WeCom callback URL check: answers the decrypted echostr",
    responses={k: v for k, v in ERRORS.items() if k in (400, 401, 404)},
)
async def wecom_kf_url_check(
    account_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]
) -> PlainTextResponse:
    state, kf = _kf(channels, account_id)
    msg_signature, timestamp, nonce, echostr = _query(request, "msg_signature", "timestamp", "nonce", "echostr")
    check_timestamp(timestamp, now=time.time(), tolerance=state.tolerance)
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
    state, kf = _kf(channels, account_id)
    msg_signature, timestamp, nonce = _query(request, "msg_signature", "timestamp", "nonce")
    check_timestamp(timestamp, now=time.time(), tolerance=state.tolerance)
    require_media_type(request, *XML_TYPES)
    envelope = parse_xml(decode_utf8(await read_body(request, channels.settings.max_body_bytes)))
    fields = _decrypt(kf.crypto, envelope, msg_signature, timestamp, nonce)
    if fields.get("Event", "").strip() != KF_DOORBELL:
        return _success()  # other WeCom events on this URL carry no customer message
    token, open_kfid = fields.get("Token", "").strip(), fields.get("OpenKfId", "").strip()
    if not token or not open_kfid:
        raise InvalidPayload("kf_msg_or_event without <Token> or <OpenKfId>")
    await _pull(channels, kf, token=token, open_kfid=open_kfid)
    return _success()


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
