"""The router's settings (``KEFU_*`` environment variables)."""

from pydantic import Field, field_validator

from contracts import identities
from kefu.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    port: int = Field(default=8001, ge=1, le=65535)
    consumer_group: str = Field(
        default="kefu-router",
        description="Kafka consumer group of the contacts consumer; the commands consumer's is this plus -commands.",
    )
    offer_tick_seconds: float = Field(
        default=0.5,
        gt=0,
        description="How often due timers are looked for: offer expiries, wrap-ups, bullseye steps, overflows, hours.",
    )
    shift_check_seconds: float = Field(
        default=30, gt=0, description="How often agents' shifts are compared with the clock to set their presence."
    )
    sse_heartbeat_seconds: float = Field(
        default=15,
        gt=0,
        description="How often an idle desktop event stream gets a comment line, so proxies keep it open.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest request body, refused with 413 before it is read: a routing configuration (PUT "
        "/v1/config) may take up to 1 MiB.",
    )
    sse_max_streams_per_agent: int = Field(
        default=4,
        ge=1,
        description="Event streams one agent may have open on one router process (desktops, devices); beyond it 429.",
    )
    feed_keep_seconds: float = Field(
        default=3600,
        gt=0,
        description="How long desktop feed items are kept for desktops that reconnect with Last-Event-ID; a desktop "
        "further behind gets feed.reset.",
    )
    phone_region: str = Field(
        default=identities.DEFAULT_PHONE_REGION,
        description="ISO 3166 region of national phone numbers (13800138000) in identities linked by hand; "
        "numbers are stored in E.164.",
    )

    @field_validator("phone_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        return identities.phone_region(value)
