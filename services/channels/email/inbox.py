"""An e-mail inbox as the configuration file describes it: who posts its mail (SendGrid, Mailgun, raw RFC 5322),
the credentials that post must carry, and the limits one email must keep (body, parts, nesting, attachments)."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from services.channels.common.ids import ACCOUNT_ID
from services.channels.exceptions import BodyTooLarge, MalformedBody

MIB = 1024 * 1024


class EmailProvider(StrEnum):
    """Who posts the inbox's mail, which decides the body shape and how it is authenticated."""

    SENDGRID = "sendgrid"  # Inbound Parse multipart/form-data (parsed or "send raw"); HTTP Basic auth
    MAILGUN = "mailgun"  # route forward, multipart or urlencoded; HMAC signature + replay token
    RAW = "raw"  # message/rfc822 body; HTTP Basic auth or a bearer token


class BasicAuth(BaseModel):
    """HTTP Basic credentials the poster must present (``https://user:password@host/...``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    username: str = Field(min_length=1, max_length=256, pattern=r"^[^:\s]+$")
    password: SecretStr

    @field_validator("password")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value


class EmailInbox(BaseModel):
    """A support mailbox whose mail a provider posts to ``/webhooks/email/{id}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID, description="the inbox id in the webhook URL")
    name: str
    address: str = Field(
        max_length=254,
        pattern=r"^[^@\s<>]+@[^@\s<>]+$",
        description="The inbox's address; ``local+<token>@domain`` recipients name a conversation.",
    )
    provider: EmailProvider
    basic_auth: BasicAuth | None = Field(default=None, description="Required for sendgrid; for raw, or bearer_token.")
    bearer_token: SecretStr | None = Field(default=None, description="raw only: ``Authorization: Bearer <token>``.")
    mailgun_signing_key: SecretStr | None = Field(default=None, description="mailgun: the HTTP webhook signing key.")
    max_body_bytes: int | None = Field(
        default=None, gt=0, description="Largest POST accepted for this inbox; default: the service's max_body_bytes."
    )
    max_attachment_bytes: int = Field(default=10 * MIB, gt=0, description="Largest single attachment.")
    max_parts: int = Field(default=100, ge=1, le=1000, description="Most MIME parts (or form parts) in one email.")
    max_depth: int = Field(default=10, ge=1, le=50, description="Deepest MIME nesting.")

    @field_validator("address")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @model_validator(mode="after")
    def _credentials_fit_provider(self) -> Self:
        if self.provider is EmailProvider.SENDGRID and self.basic_auth is None:
            raise ValueError("a sendgrid inbox needs basic_auth: SendGrid does not sign Inbound Parse posts")
        if self.provider is EmailProvider.MAILGUN and self.mailgun_signing_key is None:
            raise ValueError("a mailgun inbox needs mailgun_signing_key")
        if self.provider is EmailProvider.RAW and self.basic_auth is None and self.bearer_token is None:
            raise ValueError("a raw inbox needs basic_auth or bearer_token")
        if self.provider is not EmailProvider.RAW and self.bearer_token is not None:
            raise ValueError("bearer_token is only for raw inboxes")
        if self.provider is not EmailProvider.MAILGUN and self.mailgun_signing_key is not None:
            raise ValueError("mailgun_signing_key is only for mailgun inboxes")
        return self

    @property
    def limits(self) -> "MimeLimits":
        return MimeLimits(self.max_parts, self.max_depth, self.max_attachment_bytes)


@dataclass(frozen=True, slots=True)
class MimeLimits:
    max_parts: int = 100
    max_depth: int = 10
    max_attachment_bytes: int = 10 * MIB


class MimeTooComplex(MalformedBody):
    """400: more parts or deeper nesting than the inbox allows."""

    code = "mime_too_complex"


class AttachmentTooLarge(BodyTooLarge):
    """413: one attachment is over the inbox's limit."""

    code = "attachment_too_large"
