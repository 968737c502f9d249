"""The escalation service's settings (``KEFU_*`` environment variables)."""

from pathlib import Path

from pydantic import Field

from kefu.settings import REPO_ROOT, ServiceSettings

EXAMPLE_POLICY = REPO_ROOT / "deploy" / "examples" / "escalation.yaml"


class EscalationSettings(ServiceSettings):
    port: int = Field(default=8002, ge=1, le=65535)
    consumer_group: str = Field(
        default="kefu-escalation",
        description="Prefix of the Kafka consumer groups: one per topic (-contacts, -routing).",
    )
    policy_path: Path = Field(
        default=EXAMPLE_POLICY,
        description="The YAML file whose ``escalation`` section is the policy (docs/escalation.md).",
    )
    notify_timeout_seconds: float = Field(default=10.0, gt=0, description="Read timeout of one webhook attempt.")
    notify_max_attempts: int = Field(default=8, ge=1, description="Attempts before a notification is dead-lettered.")
