"""WeChat Official Account (公众号) messages, which arrive whole in the callback, normalized to contact events."""

from collections.abc import Mapping
from datetime import datetime

from contracts import Attachment, Channel, ContactEvent, Customer, Message
from services.channels.common.ids import conversation_key, customer_id, event_id
from services.channels.wechat.accounts import WechatAccount
from services.channels.wechat.xml import MAX_TEXT, non_empty, required, text_lines, unix_seconds

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
    openid = required(fields, "FromUserName")
    msg_type = required(fields, "MsgType")
    created = fields.get("CreateTime", "").strip()
    occurred_at = unix_seconds(created, "CreateTime")
    if msg_type == "event":
        event = required(fields, "Event")
        key = fields.get("EventKey", "").strip()
        if event != "CLICK" or key not in account.contact_menu_keys:
            return None
        dedup = f"{openid}:{created}:{event}"
        message = Message(text=f"[menu] {key}"[:MAX_TEXT])
        metadata = non_empty(msg_type="event", event=event, event_key=key)
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
        return Message(attachments=(Attachment(name="image.jpg", content_type="image/jpeg", url=url),)), non_empty(
            media_id=media_id
        )
    if msg_type == "voice":
        fmt = f.get("Format", "").strip().lower() or "amr"
        attachment = Attachment(name=f"voice.{fmt}"[:64], content_type=VOICE_TYPES.get(fmt, "application/octet-stream"))
        recognition = f.get("Recognition", "").strip()
        return Message(text=recognition[:MAX_TEXT], attachments=(attachment,)), non_empty(
            media_id=media_id, recognition="true" if recognition else None
        )
    if msg_type in ("video", "shortvideo"):
        attachment = Attachment(name="video.mp4", content_type="video/mp4")
        return Message(attachments=(attachment,)), non_empty(
            media_id=media_id, thumb_media_id=f.get("ThumbMediaId", "").strip() or None
        )
    if msg_type == "location":
        lat, lon, label = f.get("Location_X", "").strip(), f.get("Location_Y", "").strip(), f.get("Label", "").strip()
        return Message(text=text_lines(label, f"{lat},{lon}" if lat and lon else None)), non_empty(
            latitude=lat, longitude=lon, scale=f.get("Scale", "").strip(), label=label
        )
    if msg_type == "link":
        title, description, url = f.get("Title"), f.get("Description"), f.get("Url", "").strip()
        return Message(text=text_lines(title, description, url)), non_empty(link_url=url[:2048], link_title=title)
    return Message(text=f"[unsupported WeChat message type: {msg_type[:64]}]"), {}
