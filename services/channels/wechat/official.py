"""WeChat Official Account callbacks: ``/webhooks/wechat/{account_id}`` (the server URL check, then messages in
plain or safe mode), answered ``success`` only once the customer's message is on the broker."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError

from services.channels.common.http import describe, publish
from services.channels.common.runtime import Channels, Platform, channels_of
from services.channels.exceptions import BadSignature, InvalidPayload, MalformedBody
from services.channels.wechat.accounts import WechatAccount
from services.channels.wechat.callbacks import ERRORS, decrypt, query, success, xml_fields
from services.channels.wechat.crypto import WechatCrypto, check_timestamp, signature_matches
from services.channels.wechat.official_messages import official_account_event

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@dataclass(frozen=True, slots=True)
class OfficialAccount:
    """An Official Account's token (plain-mode signatures) and, with an EncodingAESKey, its safe-mode cipher."""

    account: WechatAccount
    token: str
    crypto: WechatCrypto | None


def setup(account: WechatAccount, _: Channels) -> OfficialAccount:
    """The account's token, and its cipher when it has an EncodingAESKey (safe mode)."""
    key = account.encoding_aes_key
    token = account.token.get_secret_value()
    crypto = WechatCrypto(token, key.get_secret_value(), account.appid) if key is not None else None
    return OfficialAccount(account, token, crypto)


def _verified(request: Request, channels: Channels, account_id: str) -> tuple[OfficialAccount, str, str]:
    """The account of a correctly signed, fresh callback, with its timestamp and nonce."""
    oa = channels.account(OFFICIAL_ACCOUNTS, account_id)
    signature, timestamp, nonce = query(request, "signature", "timestamp", "nonce")
    check_timestamp(timestamp, now=time.time(), tolerance=channels.settings.signature_tolerance_seconds)
    if not signature_matches(signature, oa.token, timestamp, nonce):
        raise BadSignature("signature does not match")
    return oa, timestamp, nonce


@router.get(
    "/wechat/{account_id}",
    response_class=PlainTextResponse,
    summary="WeChat Official Account server URL check: answers echostr",
    responses={k: v for k, v in ERRORS.items() if k in (401, 404)},
)
async def wechat_url_check(
    account_id: str, request: Request, channels: Annotated[Channels, Depends(channels_of)]
) -> PlainTextResponse:
    oa, timestamp, nonce = _verified(request, channels, account_id)
    (echostr,) = query(request, "echostr")
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
    oa, timestamp, nonce = _verified(request, channels, account_id)
    encrypt_type = request.query_params.get("encrypt_type", "raw").lower()
    if encrypt_type not in ("raw", "aes"):
        raise MalformedBody(f"encrypt_type {encrypt_type[:16]!r} is not supported (raw or aes)")
    if encrypt_type == "raw" and oa.account.require_encryption:
        raise BadSignature("this account accepts only safe-mode messages (encrypt_type=aes)")
    fields = await xml_fields(request, channels)
    if encrypt_type == "aes":
        if oa.crypto is None:
            raise BadSignature("encrypt_type=aes, but no encoding_aes_key is configured for this account")
        (msg_signature,) = query(request, "msg_signature")
        fields = decrypt(oa.crypto, fields, msg_signature, timestamp, nonce)
    try:
        event = official_account_event(oa.account, fields, datetime.now(UTC))
    except ValidationError as exc:
        raise InvalidPayload(describe(exc)) from exc
    if event is not None:
        await publish(channels, event)
    return success()


OFFICIAL_ACCOUNTS = Platform(
    section="wechat",
    account=WechatAccount,
    segment="wechat",
    noun="WeChat Official Account",
    router=router,
    setup=setup,
)
