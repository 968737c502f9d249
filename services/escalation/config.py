"""The escalation service's settings (``KEFU_*`` environment variables)."""

from pydantic import Field

from kefu.settings import ServiceSettings


class EscalationSettings(ServiceSettings):
    port: int = Field(default=8002, ge=1, le=65535)
    consumer_group: str = Field(default="kefu-escalation", description="Kafka consumer group of the event consumer.")
