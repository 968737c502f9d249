"""Queues: channels, skills, priority and aging, service level, bullseye, overflow, hours, policy."""

from datetime import timedelta
from typing import Self

from pydantic import Field, model_validator

from contracts import Channel
from kefu.config_file import Loc
from kefu.config_schema import Strict, raise_if
from services.router.domain.config.common import DEFAULT_OFFER_TIMEOUT_SECONDS, Level, Seconds, level_problems
from services.router.domain.config.schedule import Hours
from services.router.domain.model import BullseyeStep as DomainStep
from services.router.domain.model import Queue, RoutingPolicy


class ServiceLevel(Strict):
    answer_within_seconds: Seconds
    target_percent: float = Field(gt=0, le=100)


class BullseyeStep(Strict):
    after_seconds: Seconds = Field(description="wait after which this step widens the pool")
    relax: dict[str, Level] = Field(default_factory=dict, description="skill -> lower minimum proficiency")
    drop: list[str] = Field(default_factory=list, description="skills no longer required")

    @model_validator(mode="after")
    def _does_something(self) -> Self:
        if not self.relax and not self.drop:
            raise ValueError("a bullseye step must relax or drop at least one skill")
        return self


class Overflow(Strict):
    to: str = Field(description="the queue contacts move to")
    after_seconds: Seconds | None = Field(default=None, description="move a contact that waited this long")
    when_waiting_over: int | None = Field(default=None, ge=0, description="move new contacts while more are waiting")


class QueueConfig(Strict):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    name: str
    channels: list[Channel] = Field(min_length=1)
    skills: dict[str, int] = Field(default_factory=dict, description="skill -> minimum proficiency 1-5")
    priority: int = 0
    offer_timeout_seconds: Seconds | dict[Channel, Seconds] = Field(
        default=DEFAULT_OFFER_TIMEOUT_SECONDS,
        description="one timeout, or one per channel (others 30 s)",
    )
    reoffer_after_seconds: Seconds = Field(
        default=15,
        description="an agent who declined a contact or let its offer expire is its last choice, and not offered it "
        "again before this has passed",
    )
    aging_per_minute: float = Field(default=0, ge=0, description="priority gained per minute waited")
    service_level: ServiceLevel | None = Field(
        default=None, description="the answer-within threshold queue stats use by default"
    )
    bullseye: list[BullseyeStep] = Field(default_factory=list, description="skill relaxation over wait")
    overflow: Overflow | None = Field(default=None, description="where contacts go on a long wait or a long queue")
    hours: Hours | None = Field(default=None, description="business hours; always open when absent")
    routing_policy: RoutingPolicy = Field(default=RoutingPolicy.LONGEST_IDLE, description="agent choice")
    auto_accept: bool = Field(default=False, description="assign without an offer to accept")
    group: str | None = Field(
        default=None,
        description="only agents in this group serve the queue; escalations to the group land in its first queue",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = level_problems(self.skills, "minimum proficiency")
        if isinstance(self.offer_timeout_seconds, dict):
            problems += [
                (
                    ("offer_timeout_seconds", str(ch)),
                    f"the queue does not accept {ch}; its channels are {[str(c) for c in self.channels]}",
                )
                for ch in self.offer_timeout_seconds
                if ch not in self.channels
            ]
        problems += self._bullseye_problems()
        if self.hours is not None and self.hours.after_hours == "overflow" and self.overflow is None:
            problems.append((("hours", "after_hours"), "after_hours: overflow needs an overflow target"))
        if (
            self.overflow is not None
            and self.overflow.after_seconds is None
            and self.overflow.when_waiting_over is None
        ) and (self.hours is None or self.hours.after_hours != "overflow"):
            problems.append((("overflow",), "overflow never happens: give after_seconds or when_waiting_over"))
        raise_if(problems)
        return self

    def _bullseye_problems(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        required = dict(self.skills)
        previous = 0.0
        for i, step in enumerate(self.bullseye):
            if step.after_seconds <= previous:
                problems.append(
                    (("bullseye", i, "after_seconds"), f"must be greater than the step before ({previous:g})")
                )
            previous = step.after_seconds
            for skill, level in step.relax.items():
                if skill not in required:
                    problems.append((("bullseye", i, "relax", skill), f"skill {skill!r} is not required (any more)"))
                elif level >= required[skill]:
                    problems.append(
                        (("bullseye", i, "relax", skill), f"{level} does not relax the minimum {required[skill]}")
                    )
                else:
                    required[skill] = level
            for j, skill in enumerate(step.drop):
                if required.pop(skill, None) is None:
                    problems.append((("bullseye", i, "drop", j), f"skill {skill!r} is not required (any more)"))
        return problems

    def loosest_requirement(self) -> dict[str, int]:
        """The skills required once every bullseye step has applied: the widest pool this queue ever reaches."""
        required = dict(self.skills)
        for step in self.bullseye:
            required.update({s: min(level, required[s]) for s, level in step.relax.items() if s in required})
            for skill in step.drop:
                required.pop(skill, None)
        return required

    def offer_timeout_for(self, channel: Channel) -> float:
        """Seconds an agent has to accept an offer on ``channel``."""
        if isinstance(self.offer_timeout_seconds, dict):
            return self.offer_timeout_seconds.get(channel, DEFAULT_OFFER_TIMEOUT_SECONDS)
        return self.offer_timeout_seconds

    def bullseye_steps(self) -> tuple[DomainStep, ...]:
        """Each step with the whole requirement in force from it on."""
        required = dict(self.skills)
        steps = []
        for step in self.bullseye:
            required = {s: step.relax.get(s, level) for s, level in required.items() if s not in step.drop}
            steps.append(DomainStep(timedelta(seconds=step.after_seconds), dict(required)))
        return tuple(steps)

    def to_domain(self) -> Queue:
        overflow = self.overflow
        return Queue(
            id=self.id,
            name=self.name,
            channels=frozenset(self.channels),
            skills=dict(self.skills),
            priority=self.priority,
            offer_timeout=timedelta(seconds=max(self.offer_timeout_for(ch) for ch in self.channels)),
            offer_timeouts={ch: timedelta(seconds=self.offer_timeout_for(ch)) for ch in self.channels},
            aging_per_minute=self.aging_per_minute,
            bullseye=self.bullseye_steps(),
            overflow_to=overflow.to if overflow else None,
            overflow_after=timedelta(seconds=overflow.after_seconds) if overflow and overflow.after_seconds else None,
            overflow_when_waiting_over=overflow.when_waiting_over if overflow else None,
            hours=self.hours.calendar() if self.hours else None,
            after_hours=self.hours.after_hours if self.hours else "hold",
            close_message=self.hours.close_message if self.hours else None,
            policy=self.routing_policy,
            auto_accept=self.auto_accept,
            group=self.group,
            service_level_seconds=self.service_level.answer_within_seconds if self.service_level else None,
            reoffer_after=timedelta(seconds=self.reoffer_after_seconds),
        )
