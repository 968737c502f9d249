"""The channel adapters' settings (``KEFU_*`` environment variables)."""

from pydantic import Field

from kefu.settings import ServiceSettings


class ChannelsSettings(ServiceSettings):
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=256 * 1024, gt=0, description="Largest webhook body accepted.")
    signature_tolerance_seconds: int = Field(
        default=300,
        gt=0,
        description="How far a webhook timestamp may be from now (Standard Webhooks: 5 min).",
    )
