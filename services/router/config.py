"""The router's settings (``KEFU_*`` environment variables)."""

from pydantic import Field

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
    feed_keep_seconds: float = Field(
        default=3600,
        gt=0,
        description="How long desktop feed items are kept for desktops that reconnect with Last-Event-ID; a desktop "
        "further behind gets feed.reset.",
    )
