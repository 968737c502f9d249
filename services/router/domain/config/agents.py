"""Agents: skills, groups, capacity per channel, presence, wrap-up, missed offers, shift."""

from typing import Self

from pydantic import Field, model_validator

from contracts import Channel
from kefu.config_schema import Strict, raise_if
from services.router.domain.config.common import level_problems
from services.router.domain.config.queues import QueueConfig
from services.router.domain.config.schedule import Shift
from services.router.domain.config.text import Text
from services.router.domain.model import Presence


class AgentConfig(Strict):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    name: Text = Field(min_length=1, max_length=256)
    groups: list[Text] = Field(default_factory=list)
    skills: dict[Text, int] = Field(default_factory=dict)
    capacity: dict[Channel, int] = Field(default_factory=dict)
    initial_presence: Presence = Field(
        default=Presence.OFFLINE, description="presence when the agent is first created; later kept"
    )
    phone_exclusive: bool = Field(default=False, description="a phone call excludes all other work")
    wrap_up_seconds: float = Field(default=0, ge=0, description="after-contact work before a new offer")
    max_missed_offers: int | None = Field(default=None, ge=1, le=1000, description="set away after this many")
    shift: Shift | None = Field(
        default=None, description="sets presence automatically: available when it starts, offline when it ends"
    )

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        problems = level_problems(self.skills, "proficiency")
        problems += [
            (("capacity", str(channel)), f"capacity on {channel}: must not be negative")
            for channel, slots in self.capacity.items()
            if slots < 0
        ]
        raise_if(problems)
        return self

    def can_serve(self, queue: QueueConfig, channel: Channel) -> bool:
        """Whether this agent qualifies for ``channel`` contacts of ``queue`` at its widest (all bullseye steps)."""
        if self.capacity.get(channel, 0) <= 0:  # a channel missing from capacity has no slot
            return False
        if queue.group is not None and queue.group not in self.groups:
            return False
        return all(self.skills.get(s, 0) >= level for s, level in queue.loosest_requirement().items())
