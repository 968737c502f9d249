"""WeChat Official Accounts and WeCom customer service (微信客服): account settings, the callback
XML, and the normalization of their customer messages to contact events.

Official Account messages arrive whole in the callback; WeCom customer service callbacks are only
a doorbell (``kf_msg_or_event``) and the messages are pulled with ``kf/sync_msg``.
"""

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Self
from xml.etree.ElementTree import ParseError

from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from contracts import Attachment, Channel, ContactEvent, Customer, Message
from contracts.text import REPLACEMENT
from services.channels.common.ids import ACCOUNT_ID, conversation_key, customer_id, event_id, unix_time
from services.channels.exceptions import InvalidPayload, MalformedBody

MAX_TEXT = 65536


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key of a 43-character EncodingAESKey; ``ValueError`` (never quoting it) if not one."""
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ValueError("EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


def _check_aes_key(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        aes_key(value.get_secret_value())
    return value


class WechatAccount(BaseModel):
    """A WeChat Official Account (公众号) whose server URL is ``/webhooks/wechat/{id}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID, description="the account id in the webhook URL")
    name: str
    appid: str = Field(min_length=1, max_length=64, description="The account's AppID (wx…).")
    token: SecretStr = Field(description="The Token set in 基本配置 / 服务器配置 (3-32 letters or digits).")
    encoding_aes_key: SecretStr | None = Field(
        default=None, description="The 43-character EncodingAESKey; needed for safe (encrypted) mode."
    )
    require_encryption: bool = Field(
        default=False, description="Refuse plain-mode messages: accept only safe mode (encrypt_type=aes)."
    )
    contact_menu_keys: frozenset[str] = Field(
        default=frozenset(), description="Custom-menu CLICK EventKeys that open a contact (e.g. CONTACT_AGENT)."
    )

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not 3 <= len(secret) <= 32 or not secret.isascii() or not secret.isalnum():
            raise ValueError("token must be 3-32 letters or digits")
        return value

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_aes_key(value)

    @model_validator(mode="after")
    def _encryption_needs_key(self) -> Self:
        if self.require_encryption and self.encoding_aes_key is None:
            raise ValueError("require_encryption needs encoding_aes_key")
        return self


class WecomKfAccount(BaseModel):
    """A WeCom customer service (微信客服) callback at ``/webhooks/wecom-kf/{id}``: every 客服账号 of the corp."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID, description="the account id in the webhook URL")
    name: str
    corp_id: str = Field(min_length=1, max_length=64, description="The corp id (ww… / wx…): the receive id.")
    secret: SecretStr = Field(description="The 微信客服 Secret, for gettoken.")
    token: SecretStr = Field(description="The callback Token.")
    encoding_aes_key: SecretStr = Field(description="The callback's 43-character EncodingAESKey.")
    api_base: str = Field(
        default="https://qyapi.weixin.qq.com", pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", description="WeCom API."
    )

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        _check_aes_key(value)
        return value

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


# --- the callback XML ---------------------------------------------------------------------------


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def parse_xml(text: str) -> dict[str, str]:
    """The child elements of a callback's ``<xml>`` root, by tag (first wins).

    Parsed by defusedxml with DTDs, entities and external references forbidden: a DOCTYPE is a
    ``MalformedBody`` (no XXE, no billion laughs); so is XML that does not parse. Another root is an
    ``InvalidPayload``. A character XML 1.0 cannot hold (NUL, another C0 control: a follower can type one, and it
    cannot be escaped) becomes U+FFFD instead of making the whole message unreadable.
    """
    if _NOT_XML.search(text) is not None:
        text = _NOT_XML.sub(REPLACEMENT, text)
    try:
        root = SafeElementTree.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MalformedBody(
            f"XML with a DOCTYPE, entity or external reference is refused ({type(exc).__name__})"
        ) from exc
    except ParseError as exc:
        raise MalformedBody(f"body is not XML: {exc}") from exc
    if root.tag != "xml":
        raise InvalidPayload(f"the root element must be <xml>, got <{root.tag[:64]}>")
    fields: dict[str, str] = {}
    for child in root:
        if isinstance(child.tag, str) and child.tag not in fields:
            fields[child.tag] = child.text or ""
    return fields


def _required(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "").strip()
    if not value:
        raise InvalidPayload(f"<{name}> is missing or empty")
    return value


def _unix_time(value: str, name: str) -> datetime:
    moment = unix_time(int(value)) if value.isascii() and value.isdigit() and len(value) <= 12 else None
    if moment is None:
        raise InvalidPayload(f"<{name}> is not a Unix time")
    return moment


def _lines(*parts: str | None) -> str:
    return "\n".join(p.strip() for p in parts if p and p.strip())[:MAX_TEXT]


def _metadata(**values: str | None) -> dict[str, str]:
    return {key: value for key, value in values.items() if value}


# --- Official Account messages ------------------------------------------------------------------

OA_EVENTS_IGNORED = frozenset(
    {"subscribe", "unsubscribe", "SCAN", "LOCATION", "VIEW", "TEMPLATESENDJOBFINISH", "MASSSENDJOBFINISH"}
)
"""Events nobody needs to answer; documented in docs/channels/wechat.md. Unknown events are ignored too."""

VOICE_TYPES = {"amr": "audio/amr", "speex": "audio/speex", "mp3": "audio/mpeg", "silk": "audio/silk"}


def official_account_event(
    account: WechatAccount, fields: Mapping[str, str], received_at: datetime
) -> ContactEvent | None:
    """The contact event of one Official Account message, or None for events nobody must answer.

    Customer messages (text, image, voice, video, shortvideo, location, link, and any newer type)
    become contacts; of the events only a custom-menu CLICK whose EventKey is in
    ``contact_menu_keys`` does.
    """
    openid = _required(fields, "FromUserName")
    msg_type = _required(fields, "MsgType")
    created = fields.get("CreateTime", "").strip()
    occurred_at = _unix_time(created, "CreateTime")
    if msg_type == "event":
        event = _required(fields, "Event")
        key = fields.get("EventKey", "").strip()
        if event != "CLICK" or key not in account.contact_menu_keys:
            return None
        dedup = f"{openid}:{created}:{event}"
        message = Message(text=f"[menu] {key}"[:MAX_TEXT])
        metadata = _metadata(msg_type="event", event=event, event_key=key)
    else:
        dedup = fields.get("MsgId", "").strip() or f"{openid}:{created}:{msg_type}"
        message, metadata = _official_account_message(msg_type, fields)
        metadata = {"msg_type": msg_type, **metadata}
    openid = customer_id(Channel.WECHAT, openid, "<FromUserName>")
    return ContactEvent(
        event_id=event_id(Channel.WECHAT, account.id, dedup),
        channel=Channel.WECHAT,
        account_id=account.id,
        conversation_key=conversation_key(Channel.WECHAT, account.id, openid),
        dedup_key=dedup,
        customer=Customer(platform_id=openid),
        message=message,
        occurred_at=occurred_at,
        received_at=received_at,
        metadata=metadata,
    )


def _official_account_message(msg_type: str, f: Mapping[str, str]) -> tuple[Message, dict[str, str]]:
    media_id = f.get("MediaId", "").strip() or None
    if msg_type == "text":
        return Message(text=f.get("Content", "")[:MAX_TEXT]), {}
    if msg_type == "image":
        url = f.get("PicUrl", "").strip() or None
        return Message(attachments=(Attachment(name="image.jpg", content_type="image/jpeg", url=url),)), _metadata(
            media_id=media_id
        )
    if msg_type == "voice":
        fmt = f.get("Format", "").strip().lower() or "amr"
        attachment = Attachment(name=f"voice.{fmt}"[:64], content_type=VOICE_TYPES.get(fmt, "application/octet-stream"))
        recognition = f.get("Recognition", "").strip()
        return Message(text=recognition[:MAX_TEXT], attachments=(attachment,)), _metadata(
            media_id=media_id, recognition="true" if recognition else None
        )
    if msg_type in ("video", "shortvideo"):
        attachment = Attachment(name="video.mp4", content_type="video/mp4")
        return Message(attachments=(attachment,)), _metadata(
            media_id=media_id, thumb_media_id=f.get("ThumbMediaId", "").strip() or None
        )
    if msg_type == "location":
        lat, lon, label = f.get("Location_X", "").strip(), f.get("Location_Y", "").strip(), f.get("Label", "").strip()
        return Message(text=_lines(label, f"{lat},{lon}" if lat and lon else None)), _metadata(
            latitude=lat, longitude=lon, scale=f.get("Scale", "").strip(), label=label
        )
    if msg_type == "link":
        title, description, url = f.get("Title"), f.get("Description"), f.get("Url", "").strip()
        return Message(text=_lines(title, description, url)), _metadata(link_url=url[:2048], link_title=title)
    return Message(text=f"[unsupported WeChat message type: {msg_type[:64]}]"), {}


# --- WeCom customer service: the doorbell and kf/sync_msg --------------------------------------

KF_DOORBELL = "kf_msg_or_event"
ORIGIN_CUSTOMER = 3
"""``origin`` of a message the WeChat user sent (4: system event, 5: a servicer in WeCom)."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class KfText(_Lenient):
    content: str = ""
    menu_id: str | None = None


class KfMedia(_Lenient):
    media_id: str = ""


class KfLocation(_Lenient):
    latitude: float | None = None
    longitude: float | None = None
    name: str = ""
    address: str = ""


class KfLink(_Lenient):
    title: str = ""
    desc: str = ""
    url: str = ""
    pic_url: str = ""


class KfBusinessCard(_Lenient):
    userid: str = ""


class KfMiniprogram(_Lenient):
    title: str = ""
    appid: str = ""
    pagepath: str = ""


class KfMessage(_Lenient):
    """One entry of ``msg_list`` in a ``kf/sync_msg`` answer."""

    msgid: str = Field(min_length=1, max_length=512)
    open_kfid: str = ""
    external_userid: str = ""
    send_time: int = 0
    origin: int = 0
    servicer_userid: str | None = None
    msgtype: str = ""
    text: KfText | None = None
    image: KfMedia | None = None
    voice: KfMedia | None = None
    video: KfMedia | None = None
    file: KfMedia | None = None
    location: KfLocation | None = None
    link: KfLink | None = None
    business_card: KfBusinessCard | None = None
    miniprogram: KfMiniprogram | None = None


class SyncMsgPage(_Lenient):
    """A ``kf/sync_msg`` answer; ``msg_list`` entries are validated one by one (``KfMessage``)."""

    errcode: int = 0
    errmsg: str = ""
    next_cursor: str = ""
    has_more: int = 0
    msg_list: list[object] = Field(default_factory=list)


KF_MEDIA = {
    "image": ("image.jpg", "image/jpeg"),
    "voice": ("voice.amr", "audio/amr"),
    "video": ("video.mp4", "video/mp4"),
    "file": ("file", "application/octet-stream"),
}


def kf_contact_event(account_id: str, message: KfMessage, received_at: datetime) -> ContactEvent | None:
    """The contact event of one pulled message; None unless a customer sent it (origin 3)."""
    if message.origin != ORIGIN_CUSTOMER or message.msgtype == "event":
        return None
    if not message.open_kfid or not message.external_userid:
        raise InvalidPayload(f"message {message.msgid} has no open_kfid or external_userid")
    customer = customer_id(Channel.WECHAT, message.external_userid, f"message {message.msgid}: external_userid")
    content, extra = _kf_content(message)
    occurred_at = (unix_time(message.send_time) if message.send_time > 0 else None) or received_at
    return ContactEvent(
        event_id=event_id(Channel.WECHAT, account_id, message.msgid),
        channel=Channel.WECHAT,
        account_id=account_id,
        conversation_key=conversation_key(Channel.WECHAT, account_id, f"{message.open_kfid}:{customer}"),
        dedup_key=message.msgid,
        customer=Customer(platform_id=customer),
        message=content,
        occurred_at=occurred_at,
        received_at=received_at,
        metadata={
            "msg_type": message.msgtype,
            "open_kfid": message.open_kfid,
            **_metadata(servicer_userid=message.servicer_userid),
            **extra,
        },
    )


def _kf_content(m: KfMessage) -> tuple[Message, dict[str, str]]:
    if m.msgtype == "text" and m.text is not None:
        return Message(text=m.text.content[:MAX_TEXT]), _metadata(menu_id=m.text.menu_id)
    if m.msgtype in KF_MEDIA:
        media: KfMedia | None = getattr(m, m.msgtype)
        name, content_type = KF_MEDIA[m.msgtype]
        return Message(attachments=(Attachment(name=name, content_type=content_type),)), _metadata(
            media_id=media.media_id if media else None
        )
    if m.msgtype == "location" and m.location is not None:
        loc = m.location
        coordinates = (
            f"{loc.latitude},{loc.longitude}" if loc.latitude is not None and loc.longitude is not None else ""
        )
        return Message(text=_lines(loc.name, loc.address, coordinates)), _metadata(
            latitude=str(loc.latitude) if loc.latitude is not None else None,
            longitude=str(loc.longitude) if loc.longitude is not None else None,
            label=loc.name,
            address=loc.address,
        )
    if m.msgtype == "link" and m.link is not None:
        return Message(text=_lines(m.link.title, m.link.desc, m.link.url)), _metadata(
            link_url=m.link.url[:2048], link_title=m.link.title
        )
    if m.msgtype == "business_card" and m.business_card is not None:
        return Message(text=f"[business card] {m.business_card.userid}"), _metadata(
            business_card_userid=m.business_card.userid
        )
    if m.msgtype == "miniprogram" and m.miniprogram is not None:
        return Message(text=_lines(m.miniprogram.title)), _metadata(
            miniprogram_appid=m.miniprogram.appid, miniprogram_pagepath=m.miniprogram.pagepath
        )
    return Message(text=f"[unsupported WeChat message type: {m.msgtype[:64]}]"), {}
