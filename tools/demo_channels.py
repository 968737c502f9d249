"""``kefu demo --channel``: one customer message on WeChat, Douyin, e-mail or phone, signed as that platform signs.

Each request is built for an account of the configuration with the channels service's own signing code (WeChat's
SHA-1 and, when the account has an EncodingAESKey, safe-mode AES; Douyin's SHA-1 of secret and body; the raw e-mail
inbox's bearer token; Twilio's HMAC-SHA1 over the line's public URL and the sorted form), so the service checks it
exactly as it checks the platform's. A conversation id maps to one customer (OpenID, open_id, e-mail address, call),
so a second message in the same conversation joins the open contact, as on web chat.
"""

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol, TypeVar
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from services.channels.accounts import ChannelsConfig
from services.channels.douyin.account import DouyinApp
from services.channels.douyin.signature import DouyinSignatureVerifier
from services.channels.email.inbox import EmailInbox
from services.channels.phone.account import PhoneLine
from services.channels.phone.twilio import compute_signature
from services.channels.wechat.accounts import WechatAccount
from services.channels.wechat.crypto import WechatCrypto, sha1_signature


class _Account(Protocol):
    @property
    def id(self) -> str: ...


A = TypeVar("A", bound=_Account)


class NoAccount(LookupError):
    """The configuration has no account the demo can post to on that channel."""


@dataclass(frozen=True)
class DemoRequest:
    """What to POST to the channels service: path (with the account id), query, body and headers."""

    path: str
    body: bytes
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)


def _pick(accounts: Sequence[A], account_id: str | None, what: str) -> A:
    found = next((a for a in accounts if account_id in (None, a.id)), None)
    if found is None:
        raise NoAccount(f"no {what} {account_id!r}" if account_id else f"no {what} in the configuration")
    return found


def wechat(config: ChannelsConfig, account_id: str | None, text: str, conversation: str) -> DemoRequest:
    """A text message to an Official Account from the follower ``o-demo-<conversation>``."""
    account: WechatAccount = _pick(config.wechat, account_id, "WeChat Official Account")
    timestamp, nonce, openid = str(int(time.time())), uuid.uuid4().hex[:10], f"o-demo-{conversation}"
    message = (
        f"<xml><ToUserName><![CDATA[{account.appid}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{escape(text)}</Content><MsgId>{uuid.uuid4().int % 10**18}</MsgId></xml>"
    )
    token = account.token.get_secret_value()
    params = {"signature": sha1_signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    params["openid"] = openid
    if account.encoding_aes_key is not None:  # safe mode, as an account with an EncodingAESKey is set up to receive
        crypto = WechatCrypto(token, account.encoding_aes_key.get_secret_value(), account.appid)
        encrypted = crypto.encrypt(message)
        params |= {"encrypt_type": "aes", "msg_signature": crypto.sign(timestamp, nonce, encrypted)}
        message = f"<xml><ToUserName><![CDATA[{account.appid}]]></ToUserName><Encrypt>{encrypted}</Encrypt></xml>"
    return DemoRequest(f"/webhooks/wechat/{account.id}", message.encode(), {"content-type": "text/xml"}, params)


def douyin(config: ChannelsConfig, account_id: str | None, text: str, conversation: str) -> DemoRequest:
    """An ``im_receive_msg`` event from the user ``_000demo-<conversation>``."""
    app: DouyinApp = _pick(config.douyin, account_id, "Douyin app")
    user, now_ms = f"_000demo-{conversation}", int(time.time() * 1000)
    content = {
        "conversation_short_id": f"demo-{conversation}",
        "server_message_id": f"demo-{uuid.uuid4().hex}",
        "conversation_type": 1,
        "create_time": now_ms,
        "message_type": "text",
        "text": text,
        "user_infos": [{"open_id": user, "nick_name": "抖音访客 Demo viewer"}],
    }
    event = {
        "event": "im_receive_msg",
        "client_key": app.client_key,
        "from_user_id": user,
        "to_user_id": f"_000{app.id}",
        "content": content,
        "log_id": str(now_ms),
    }
    body = json.dumps(event, ensure_ascii=False).encode()
    signature = DouyinSignatureVerifier(app.client_secret.get_secret_value()).sign(body)
    headers = {"content-type": "application/json", "x-douyin-signature": signature, "msg-id": uuid.uuid4().hex}
    return DemoRequest(f"/webhooks/douyin/{app.id}", body, headers)


def email(config: ChannelsConfig, account_id: str | None, text: str, conversation: str) -> DemoRequest:
    """A raw RFC 5322 message from ``demo-<conversation>@example.org``, in the thread ``<demo-<conversation>@…>``,
    to an inbox with ``provider: raw``."""
    inbox: EmailInbox = _pick([i for i in config.email if i.provider == "raw"], account_id, "raw e-mail inbox")
    if inbox.bearer_token is None:
        raise NoAccount(f"e-mail inbox {inbox.id!r} has no bearer_token for kefu demo to post with")
    message = EmailMessage()
    message["From"] = f"Demo Customer <demo-{conversation}@example.org>"
    message["To"] = inbox.address
    message["Subject"] = text[:60]
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    # the thread root names the conversation, so every message of one demo conversation is one e-mail thread
    message["References"] = f"<demo-{conversation}@example.org>"
    message.set_content(text)
    headers = {"content-type": "message/rfc822", "authorization": f"Bearer {inbox.bearer_token.get_secret_value()}"}
    return DemoRequest(f"/webhooks/email/{inbox.id}", message.as_bytes(), headers)


def phone(config: ChannelsConfig, account_id: str | None, text: str, conversation: str) -> DemoRequest:
    """An incoming call (Twilio's ``ringing`` webhook); a call carries no text, so ``text`` is not sent."""
    del text
    line: PhoneLine = _pick(config.phone, account_id, "phone line")
    path = f"/webhooks/phone/{line.id}"
    caller = "+86138" + str(uuid.uuid5(uuid.NAMESPACE_URL, conversation).int)[:8]  # one caller per conversation
    form = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": "CA" + uuid.uuid4().hex,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": caller,
        "Caller": caller,
        "To": line.numbers[0] if line.numbers else "",
        "Called": line.numbers[0] if line.numbers else "",
    }
    # Twilio signs the URL it was configured with: the line's public URL, not the address kefu demo posts to
    token = line.auth_token.get_secret_value().encode()
    signature = compute_signature(token, line.public_url.rstrip("/") + path, sorted(form.items()))
    headers = {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature}
    return DemoRequest(path, urlencode(form).encode(), headers)


BUILDERS: dict[str, Callable[[ChannelsConfig, str | None, str, str], DemoRequest]] = {
    "wechat": wechat,
    "douyin": douyin,
    "email": email,
    "phone": phone,
}
