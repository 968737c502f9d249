"""The ``routing`` section of the configuration file: queues, agents and routes."""

from datetime import timedelta
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts import Channel
from services.router.domain.model import Presence, Queue


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueueConfig(_Strict):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    name: str
    channels: list[Channel] = Field(min_length=1)
    skills: dict[str, int] = Field(default_factory=dict, description="skill -> minimum proficiency 1-5")
    priority: int = 0
    offer_timeout_seconds: float = Field(default=30, gt=0)

    @model_validator(mode="after")
    def _levels(self) -> Self:
        for skill, level in self.skills.items():
            if not 1 <= level <= 5:
                raise ValueError(f"skill {skill!r}: minimum proficiency must be 1-5, got {level}")
        return self

    def to_domain(self) -> Queue:
        return Queue(
            id=self.id,
            name=self.name,
            channels=frozenset(self.channels),
            skills=dict(self.skills),
            priority=self.priority,
            offer_timeout=timedelta(seconds=self.offer_timeout_seconds),
        )


class AgentConfig(_Strict):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
    name: str
    groups: list[str] = Field(default_factory=list)
    skills: dict[str, int] = Field(default_factory=dict)
    capacity: dict[Channel, int] = Field(default_factory=dict)
    initial_presence: Presence = Field(
        default=Presence.OFFLINE, description="presence when the agent is first created; later kept"
    )

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        for skill, level in self.skills.items():
            if not 1 <= level <= 5:
                raise ValueError(f"skill {skill!r}: proficiency must be 1-5, got {level}")
        for channel, slots in self.capacity.items():
            if slots < 0:
                raise ValueError(f"capacity on {channel}: must not be negative")
        return self


class RouteConfig(_Strict):
    channel: Channel
    account: str | None = Field(default=None, description="the channel account; any when absent")
    queue: str


class RoutingConfig(_Strict):
    default_queue: str
    routes: list[RouteConfig] = Field(default_factory=list)
    queues: list[QueueConfig] = Field(min_length=1)
    agents: list[AgentConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Self:
        ids = [q.id for q in self.queues]
        if len(set(ids)) != len(ids):
            raise ValueError("queue ids must be unique")
        agent_ids = [a.id for a in self.agents]
        if len(set(agent_ids)) != len(agent_ids):
            raise ValueError("agent ids must be unique")
        for name in [self.default_queue, *(r.queue for r in self.routes)]:
            if name not in ids:
                raise ValueError(f"unknown queue {name!r}; queues are {ids}")
        return self

    def queue_for(self, channel: Channel, account_id: str) -> str:
        """The queue a new contact on ``channel``/``account_id`` waits in."""
        for route in self.routes:
            if route.channel == channel and route.account in (None, account_id):
                return route.queue
        return self.default_queue
