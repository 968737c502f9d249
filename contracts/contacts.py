"""The normalized inbound contact event: one customer message from any channel."""

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import Field

from contracts.types import Channel, Contract, Timestamp


class Customer(Contract):
    """Who wrote, as the platform identifies them."""

    platform_id: str = Field(
        min_length=1,
        max_length=256,
        description="The customer's id on the platform: visitor id, OpenID, open_id, e-mail address, E.164 number.",
        examples=["visitor-8f3a"],
    )
    display_name: str | None = Field(
        default=None, max_length=256, description="Name the platform shows, if any.", examples=["张伟"]
    )
    language: str | None = Field(
        default=None, max_length=35, description="BCP 47 language tag, if known.", examples=["zh-CN"]
    )
    external_id: str | None = Field(
        default=None,
        max_length=256,
        description="The business's own id of the customer when the platform knows it (a web chat login); "
        "identities sharing it are one customer.",
        examples=["member-10086"],
    )


class Attachment(Contract):
    """Metadata of a file the customer sent; the bytes stay with the platform."""

    name: str = Field(max_length=512, description="File name.", examples=["receipt.jpg"])
    content_type: str = Field(max_length=255, description="MIME type.", examples=["image/jpeg"])
    size: int | None = Field(default=None, ge=0, description="Size in bytes, if known.", examples=[48213])
    url: str | None = Field(default=None, max_length=2048, description="Where the platform serves it.", examples=[None])
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the content, if known."
    )


class Message(Contract):
    """The content of one customer message."""

    text: str = Field(default="", max_length=65536, description="Plain text of the message.", examples=["你好"])
    attachments: tuple[Attachment, ...] = Field(default=(), description="Files sent with the message.")


class ContactEventKind(StrEnum):
    """What the event says about the conversation."""

    MESSAGE = "message"  # the customer wrote (or called): opens a contact, or joins the open one
    ABANDONED = "abandoned"  # the customer left before being served (a caller hung up in the queue)


class ContactEvent(Contract):
    """A customer message, normalized from its channel, published to ``kefu.contacts.v1``.

    The first message of a conversation opens a contact; later ones are appended to it.
    """

    schema_version: Literal[1] = Field(default=1, description="Version of this schema.")
    event_id: UUID = Field(
        description="Stable id: derived from the platform dedup key, so a platform retry gets the same id.",
        examples=["5a1c1f0e-6f3b-5b7e-9a59-1d2c3b4a5f60"],
    )
    kind: ContactEventKind = Field(
        default=ContactEventKind.MESSAGE,
        description="Whether the customer wrote or left: a message, or an abandonment.",
        examples=["message"],
    )
    channel: Channel = Field(description="The channel the message came from.", examples=["webchat"])
    account_id: str = Field(
        min_length=1,
        max_length=128,
        description="The kefu account it arrived on: web chat site, inbox, official account, app or phone line.",
        examples=["demo"],
    )
    conversation_key: str = Field(
        min_length=1,
        max_length=512,
        description="Identifies the conversation across messages; the Kafka key.",
        examples=["webchat:demo:conv-1"],
    )
    dedup_key: str = Field(
        min_length=1,
        max_length=512,
        description="The platform's own id of this delivery (webhook-id, MsgId, Message-ID, CallSid+status).",
        examples=["msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"],
    )
    customer: Customer = Field(description="Who wrote.")
    message: Message = Field(description="What they wrote.")
    occurred_at: Timestamp = Field(description="When the platform says the message was sent.")
    received_at: Timestamp = Field(description="When kefu received the webhook.")
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Channel-specific extras worth keeping (page URL, subject…).",
        examples=[{"page_url": "https://shop.example.com/cart"}],
    )
