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
