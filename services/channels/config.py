"""The channel adapters' settings (``KEFU_*`` environment variables)."""

from limits import parse_many
from pydantic import Field, field_validator

from kefu.settings import ServiceSettings


class ChannelsSettings(ServiceSettings):
    port: int = Field(default=8000, ge=1, le=65535)
    signature_tolerance_seconds: int = Field(
        default=300,
        gt=0,
        description="How far a webhook timestamp may be from now (Standard Webhooks: 5 min).",
    )
    replay_purge_interval_seconds: float = Field(
        default=3600,
        gt=0,
        description="How often expired replay tokens (Mailgun's one-time tokens) are deleted from the database.",
    )
    webhook_rate_limit: str = Field(
        default="1000/second",
        description="Webhooks accepted per channel account and process, in the limits notation (e.g. 100/second, "
        "or 100/second;2000/minute); beyond it 429 with Retry-After.",
    )

    @field_validator("webhook_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_many(value)  # a ValueError names what is wrong
        return value
