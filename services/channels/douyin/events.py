"""Douyin open platform (抖音开放平台): the webhook envelope, private-message events and
their normalization to contact events.

Every webhook is ``{"event", "client_key", "from_user_id", "to_user_id", "content", "log_id"}``;
``content`` arrives as a JSON object or as a JSON-encoded string, depending on the event.
Only ``im_receive_msg`` (a customer wrote to the app's Douyin account) becomes a contact.
"""

import json
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from contracts import Attachment, Channel, ContactEvent, Customer, Message
from services.channels.common.ids import conversation_key, customer_id, event_id, unix_time

VERIFY_WEBHOOK: Final = "verify_webhook"
RECEIVE_MESSAGE: Final = "im_receive_msg"

IGNORED_EVENTS: Final[dict[str, str]] = {
    "im_send_msg": "the account's own outgoing message, not a customer contact",
    "im_enter_direct_msg": "the customer opened the chat page but has not written",
    "im_recall_msg": "a message was recalled; contact events cannot retract one",
    "im_message_read": "a read receipt",
    "im_group_receive_msg": "group chats are not one-to-one customer service",
    "im_group_send_msg": "group chats are not one-to-one customer service",
    "im_authorize": "authorization bookkeeping",
    "enter_group_audit_change": "group membership bookkeeping",
    "group_fans_event": "group membership bookkeeping",
}
"""Events answered 200 and dropped, with the reason (documented); any other unknown event is dropped too."""

_MAX_DEDUP_KEY = 512
_SECONDS_BEFORE = 100_000_000_000
"""``create_time`` is documented as 13-digit milliseconds; anything below this is taken as seconds."""


class DouyinPayloadError(ValueError):
    """A webhook that is JSON but not what Douyin sends for its event (the endpoint answers 422)."""


class DouyinWebhook(BaseModel):
    """The envelope every Douyin webhook shares; ``content`` is decoded per event."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)
    event: str = Field(min_length=1, max_length=128)
    client_key: str | None = Field(default=None, max_length=256)
    from_user_id: str | None = Field(default=None, max_length=256, description="the sender's open_id")
    to_user_id: str | None = Field(default=None, max_length=256, description="the receiver's open_id")
    log_id: str | None = Field(default=None, max_length=256)
    content: Any = None


class UserInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    open_id: str = ""
    nick_name: str | None = None


class CardItem(BaseModel):
    """One filled-in field of a lead card (留资卡片)."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)
    label: str = Field(default="", max_length=1024)
    value: str = Field(default="", max_length=4096)


class PrivateMessage(BaseModel):
    """``content`` of ``im_receive_msg`` / ``im_send_msg`` (接收私信消息事件)."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)
    conversation_short_id: str = Field(min_length=1, max_length=512)
    server_message_id: str = Field(min_length=1, max_length=512)
    conversation_type: int | None = None
    message_type: str = Field(default="other", max_length=64)
    create_time: int | None = Field(default=None, ge=0, le=253_402_300_799_999, description="milliseconds")
    text: str | None = Field(default=None, max_length=65536)
    resource_type: str | None = Field(default=None, max_length=255)
    resource_url: str | None = Field(default=None, max_length=2048)
    item_id: str | None = Field(default=None, max_length=512, description="a shared Douyin video (encrypted id)")
    card_id: str | None = Field(default=None, max_length=512)
    card_status: int | None = None
    card_data: list[CardItem] = Field(default_factory=list, max_length=100)
    scene_type: int | None = None
    user_infos: list[UserInfo] = Field(default_factory=list, max_length=100)


def decode_content(raw: Any) -> dict[str, Any]:
    """``content`` as an object, whether it came as one or as a JSON-encoded string."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise DouyinPayloadError(f"content is a string but not JSON: {exc}") from exc
    if raw is None:
        raise DouyinPayloadError("content is missing")
    if not isinstance(raw, dict):
        raise DouyinPayloadError(f"content must be a JSON object, got {_json_type(raw)}")
    return raw


def challenge_of(webhook: DouyinWebhook) -> int | str:
    """The ``challenge`` of a ``verify_webhook`` event, to be echoed as ``{"challenge": …}``."""
    challenge = decode_content(webhook.content).get("challenge")
    if isinstance(challenge, bool) or not isinstance(challenge, int | str) or challenge == "":
        raise DouyinPayloadError("content.challenge must be a number or a non-empty string")
    return challenge


def private_message(webhook: DouyinWebhook) -> PrivateMessage:
    """The message of an ``im_receive_msg`` event; raises ``DouyinPayloadError`` or ``ValidationError``."""
    if not webhook.from_user_id:
        raise DouyinPayloadError("from_user_id (the customer's open_id) is missing")
    return PrivateMessage.model_validate(decode_content(webhook.content))


def dedup_key(msg_id: str | None, log_id: str | None, message: PrivateMessage) -> str:
    """The delivery's id: the ``Msg-Id`` header, else ``log_id``, else the message's ``server_message_id``."""
    for candidate in (msg_id, log_id):
        if candidate is not None and (candidate := candidate.strip()):
            if len(candidate) > _MAX_DEDUP_KEY:
                raise DouyinPayloadError(f"Msg-Id header longer than {_MAX_DEDUP_KEY} characters")
            return candidate
    return message.server_message_id


def to_contact_event(
    app_id: str, dedup: str, webhook: DouyinWebhook, message: PrivateMessage, received_at: datetime
) -> ContactEvent:
    """Normalize one customer private message (``im_receive_msg``)."""
    open_id = customer_id(Channel.DOUYIN, webhook.from_user_id or "", "from_user_id")
    text, attachments = render(message)
    return ContactEvent(
        event_id=event_id(Channel.DOUYIN, app_id, dedup),
        channel=Channel.DOUYIN,
        account_id=app_id,
        conversation_key=conversation_key(Channel.DOUYIN, app_id, open_id),
        dedup_key=dedup,
        customer=Customer(platform_id=open_id, display_name=nickname(message, open_id)),
        message=Message(text=text, attachments=attachments),
        occurred_at=sent_at(message.create_time) or received_at,
        received_at=received_at,
        metadata=metadata(webhook, message),
    )


def render(message: PrivateMessage) -> tuple[str, tuple[Attachment, ...]]:
    """The message's text and attachment metadata, per ``message_type``."""
    text = message.text or ""
    kind = message.message_type
    if kind in ("image", "emoji"):
        content_type = _mime(message.resource_type, "image/*")
        return text, (Attachment(name=kind, content_type=content_type, url=message.resource_url or None),)
    if kind == "user_local_image":  # the URL comes from the 获取消息中的多媒体资源 API
        return text, (Attachment(name="image", content_type="image/*"),)
    if kind in ("video", "user_local_video"):
        return text, (Attachment(name="video", content_type="video/*"),)
    if kind == "retain_consult_card" and message.card_data:
        lines = [f"{item.label}: {item.value}" if item.label else item.value for item in message.card_data]
        return "\n".join(filter(None, [text, *lines]))[:65536], ()
    return text, ()


def nickname(message: PrivateMessage, open_id: str) -> str | None:
    """The sender's nickname from ``user_infos``, if Douyin sent it."""
    for user in message.user_infos:
        if user.open_id == open_id and user.nick_name and (name := user.nick_name.strip()):
            return name[:256]
    return None


def sent_at(create_time: int | None) -> datetime | None:
    """``create_time`` (13-digit milliseconds; 10-digit seconds tolerated) as an aware datetime."""
    if not create_time:
        return None
    seconds = create_time if create_time < _SECONDS_BEFORE else create_time / 1000
    return unix_time(seconds)


def metadata(webhook: DouyinWebhook, message: PrivateMessage) -> dict[str, str]:
    """What an agent or a reply needs later: the ids to answer in the conversation and to fetch media."""
    fields = {
        "conversation_short_id": message.conversation_short_id,
        "server_message_id": message.server_message_id,
        "message_type": message.message_type,
        "account_open_id": webhook.to_user_id,
        "log_id": webhook.log_id,
        "item_id": message.item_id,
        "card_id": message.card_id,
        "card_status": None if message.card_status is None else str(message.card_status),
        "scene_type": None if message.scene_type is None else str(message.scene_type),
    }
    return {key: value for key, value in fields.items() if value}


def _mime(resource_type: str | None, default: str) -> str:
    return resource_type if resource_type and "/" in resource_type else default


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "an array" if isinstance(value, list) else type(value).__name__
