"""Web chat: the widget backend's message format and its normalization to a contact event."""

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts import Attachment, Channel, ContactEvent, Customer, Message
from services.channels.common.ids import conversation_key, event_id


class Visitor(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=256, description="The widget's visitor id (anonymous until login).")
    user_id: str | None = Field(
        default=None, max_length=256, description="The site's own id of the logged-in visitor; links identities."
    )
    name: str | None = Field(default=None, max_length=256)
    language: str | None = Field(default=None, max_length=35)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: str = Field(default="", max_length=65536)
    sent_at: AwareDatetime
    attachments: list[Attachment] = Field(default_factory=list, max_length=20)


class WebchatWebhook(BaseModel):
    """The JSON body the web chat widget backend posts for each visitor message."""

    model_config = ConfigDict(extra="ignore")
    conversation_id: str = Field(min_length=1, max_length=256)
    visitor: Visitor
    message: ChatMessage
    page_url: str | None = Field(default=None, max_length=2048)


def to_contact_event(site_id: str, webhook_id: str, body: WebchatWebhook, received_at: datetime) -> ContactEvent:
    """Normalize one web chat webhook."""
    metadata = {"page_url": body.page_url} if body.page_url else {}
    return ContactEvent(
        event_id=event_id(Channel.WEBCHAT, site_id, webhook_id),
        channel=Channel.WEBCHAT,
        account_id=site_id,
        conversation_key=conversation_key(Channel.WEBCHAT, site_id, body.conversation_id),
        dedup_key=webhook_id,
        customer=Customer(
            platform_id=body.visitor.id,
            display_name=body.visitor.name,
            language=body.visitor.language,
            external_id=body.visitor.user_id,
        ),
        message=Message(text=body.message.text, attachments=tuple(body.message.attachments)),
        occurred_at=body.message.sent_at,
        received_at=received_at,
        metadata=metadata,
    )
