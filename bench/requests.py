"""One valid, signed request per channel, built from the example configuration's accounts."""

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from kefu.config_file import load_section
from services.channels.accounts import ChannelsConfig
from services.channels.douyin.signature import DouyinSignatureVerifier
from services.channels.phone.twilio import compute_signature
from services.channels.wechat.crypto import WechatCrypto, sha1_signature
from tools.demo import signed_request


@dataclass(frozen=True)
class SignedRequest:
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


def webchat(config: ChannelsConfig) -> SignedRequest:
    site = config.webchat[0]
    body = json.dumps(
        {
            "conversation_id": "bench-1",
            "visitor": {"id": "visitor-bench", "name": "压测访客"},
            "message": {"text": "你好，我想咨询一下这款空调", "sent_at": datetime.now(UTC).isoformat()},
        },
        ensure_ascii=False,
    ).encode()
    return SignedRequest(f"/webhooks/webchat/{site.id}", body, signed_request(site.secrets[0].get_secret_value(), body))


def douyin(config: ChannelsConfig) -> SignedRequest:
    app = config.douyin[0]
    body = json.dumps(
        {
            "event": "im_receive_msg",
            "client_key": app.client_key,
            "from_user_id": "customer-open-id",
            "to_user_id": "account-open-id",
            "content": {
                "conversation_short_id": "bench-conversation",
                "server_message_id": "bench-message",
                "conversation_type": 1,
                "create_time": 1681303285997,
                "message_type": "text",
                "text": "请问空调什么时候发货?",
                "user_infos": [{"open_id": "customer-open-id", "nick_name": "压测"}],
            },
            "log_id": "2023429834752345783",
        },
        ensure_ascii=False,
    ).encode()
    signature = DouyinSignatureVerifier(app.client_secret.get_secret_value()).sign(body)
    headers = {"content-type": "application/json", "x-douyin-signature": signature, "msg-id": "bench-msg-1"}
    return SignedRequest(f"/webhooks/douyin/{app.id}", body, headers)


def phone(config: ChannelsConfig) -> SignedRequest:
    line = config.phone[0]
    path = f"/webhooks/phone/{line.id}"
    params = {
        "AccountSid": "AC" + "f" * 32,
        "CallSid": "CA" + "b" * 32,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": "+8613800138000",
        "To": line.numbers[0] if line.numbers else "+862160000000",
    }
    signature = compute_signature(line.auth_token.get_secret_value().encode(), line.public_url + path, params.items())
    headers = {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature}
    return SignedRequest(path, urlencode(params).encode(), headers)


def email(config: ChannelsConfig) -> SignedRequest:
    inbox = next(i for i in config.email if i.provider == "raw")
    message = (
        "From: =?UTF-8?B?5byg5Lyf?= <zhang.wei@example.com>\r\n"
        f"To: {inbox.address}\r\n"
        "Subject: =?UTF-8?B?56m66LCD5LiN5Yi25Ya3?=\r\n"
        "Message-ID: <bench-1@client.example.com>\r\n"
        "Date: Sun, 22 Nov 2026 10:00:00 +0800\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        "5oiR55qE56m66LCD5LiN5Yi25Ya35LqG77yM6K+35biu5b+Z55yL5LiA5LiL44CC\r\n"
    ).encode()
    assert inbox.bearer_token is not None
    headers = {
        "content-type": "message/rfc822",
        "authorization": f"Bearer {inbox.bearer_token.get_secret_value()}",
    }
    return SignedRequest(f"/webhooks/email/{inbox.id}", message, headers)


def wechat(config: ChannelsConfig) -> SignedRequest:
    account = config.wechat[0]
    assert account.encoding_aes_key is not None
    token = account.token.get_secret_value()
    crypto = WechatCrypto(token, account.encoding_aes_key.get_secret_value(), account.appid)
    timestamp, nonce = str(int(time.time())), "1372623149"
    message = (
        "<xml><ToUserName><![CDATA[gh_demo]]></ToUserName><FromUserName><![CDATA[oBenchOpenId]]></FromUserName>"
        f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[你好，空调不制冷]]></Content><MsgId>4561255354251345929</MsgId></xml>"
    )
    encrypted = crypto.encrypt(message)
    query = urlencode(
        {
            "signature": sha1_signature(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": "oBenchOpenId",
            "encrypt_type": "aes",
            "msg_signature": crypto.sign(timestamp, nonce, encrypted),
        }
    )
    body = f"<xml><ToUserName><![CDATA[gh_demo]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return SignedRequest(f"/webhooks/wechat/{account.id}?{query}", body.encode(), {"content-type": "text/xml"})


def all_requests(config_path: Path) -> dict[str, SignedRequest]:
    """Every channel's request, by name."""
    config = load_section(config_path, "channels", ChannelsConfig)
    return {
        "webchat (Standard Webhooks, JSON)": webchat(config),
        "wechat OA (safe mode: AES, XML)": wechat(config),
        "douyin (SHA-1 signature, JSON)": douyin(config),
        "phone (Twilio signature, TwiML)": phone(config),
        "email (raw RFC 5322, bearer)": email(config),
    }
