"""A phone line as the configuration file describes it: the Twilio account that signs its webhooks, the public
URL they are signed for, its numbers and region, and what a caller hears while waiting."""

from urllib.parse import urlsplit

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from contracts import identities
from services.channels.common.ids import ACCOUNT_ID
from services.channels.phone.calls import e164_or_none


class PhoneLine(BaseModel):
    """A support line: one or more Twilio numbers whose voice webhook points at kefu."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID, description="the line id in the webhook URL")
    name: str
    auth_token: SecretStr = Field(description="The Twilio account's Auth Token: it signs every webhook.")
    secondary_auth_token: SecretStr | None = Field(
        default=None, description="Twilio's secondary Auth Token, also accepted while promoting it."
    )
    public_url: str = Field(
        description="Scheme, host and optional path prefix Twilio is configured with, e.g. "
        "https://kefu.example.com; the signed URL is this + the request path + query string."
    )
    trust_forwarded_headers: bool = Field(
        default=False,
        description="Take scheme and host from X-Forwarded-Proto / X-Forwarded-Host when present "
        "(only behind a proxy that sets them).",
    )
    numbers: tuple[str, ...] = Field(
        default=(),
        description="The line's Twilio numbers (normalized to E.164); calls to other numbers are refused. "
        "Empty: any number.",
    )
    default_region: str | None = Field(
        default=None,
        description="ISO 3166 region for caller numbers without a country code; defaults to the region "
        "of the first number.",
    )
    queue_name: str | None = Field(
        default=None, min_length=1, max_length=64, description="The Twilio queue callers wait in (default: the id)."
    )
    greeting: str | None = Field(default=None, max_length=4096, description="Said to the caller before queueing.")
    greeting_language: str = Field(default="zh-CN", max_length=35, description="<Say language=…>.")
    greeting_voice: str | None = Field(default=None, max_length=64, description="<Say voice=…> (Twilio's default).")
    wait_url: str | None = Field(
        default=None,
        max_length=2048,
        description="<Enqueue waitUrl=…>: TwiML played while waiting (hold music); Twilio's default when unset.",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL such as https://kefu.example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not have a query, fragment or credentials")
        return value.rstrip("/")

    @field_validator("wait_url")
    @classmethod
    def _wait_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an absolute http(s) URL")
        return value

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        normalized = []
        for number in value:
            e164 = e164_or_none(number, None)
            if e164 is None:
                raise ValueError(f"{number!r} is not a phone number with a country code (+86…)")
            normalized.append(e164)
        return tuple(normalized)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return identities.phone_region(value) if value is not None else None

    @property
    def queue(self) -> str:
        """The Twilio queue callers of this line wait in."""
        return self.queue_name or self.id

    @property
    def region(self) -> str | None:
        """The region for caller numbers without a country code: configured, or of the first number."""
        if self.default_region is not None or not self.numbers:
            return self.default_region
        region = phonenumbers.region_code_for_number(phonenumbers.parse(self.numbers[0]))
        return region if region and region != phonenumbers.UNKNOWN_REGION else None
