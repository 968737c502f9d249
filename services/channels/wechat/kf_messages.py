"""WeCom customer service (微信客服) messages: the callback is only a doorbell (``kf_msg_or_event``); the messages
are pulled with ``kf/sync_msg`` (``kf_api``) and normalized to contact events here."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from contracts import Attachment, Channel, ContactEvent, Customer, Message
from services.channels.common.ids import conversation_key, customer_id, event_id, unix_time
from services.channels.exceptions import InvalidPayload
from services.channels.wechat.xml import MAX_TEXT, non_empty, text_lines

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
            **non_empty(servicer_userid=message.servicer_userid),
            **extra,
        },
    )


def _kf_content(m: KfMessage) -> tuple[Message, dict[str, str]]:
    if m.msgtype == "text" and m.text is not None:
        return Message(text=m.text.content[:MAX_TEXT]), non_empty(menu_id=m.text.menu_id)
    if m.msgtype in KF_MEDIA:
        media: KfMedia | None = getattr(m, m.msgtype)
        name, content_type = KF_MEDIA[m.msgtype]
        return Message(attachments=(Attachment(name=name, content_type=content_type),)), non_empty(
            media_id=media.media_id if media else None
        )
    if m.msgtype == "location" and m.location is not None:
        loc = m.location
        coordinates = (
            f"{loc.latitude},{loc.longitude}" if loc.latitude is not None and loc.longitude is not None else ""
        )
        return Message(text=text_lines(loc.name, loc.address, coordinates)), non_empty(
            latitude=str(loc.latitude) if loc.latitude is not None else None,
            longitude=str(loc.longitude) if loc.longitude is not None else None,
            label=loc.name,
            address=loc.address,
        )
    if m.msgtype == "link" and m.link is not None:
        return Message(text=text_lines(m.link.title, m.link.desc, m.link.url)), non_empty(
            link_url=m.link.url[:2048], link_title=m.link.title
        )
    if m.msgtype == "business_card" and m.business_card is not None:
        return Message(text=f"[business card] {m.business_card.userid}"), non_empty(
            business_card_userid=m.business_card.userid
        )
    if m.msgtype == "miniprogram" and m.miniprogram is not None:
        return Message(text=text_lines(m.miniprogram.title)), non_empty(
            miniprogram_appid=m.miniprogram.appid, miniprogram_pagepath=m.miniprogram.pagepath
        )
    return Message(text=f"[unsupported WeChat message type: {m.msgtype[:64]}]"), {}
