"""The ``routing`` section of the configuration file: skills, groups, classification rules, queues and agents.

Each model checks its own fields; ``RoutingConfig`` checks what crosses models (unknown skills and queues, overflow
cycles, queues no agent can serve) and reports every problem with the path of the field at fault, so that
``kefu.config_file`` can name its line. Unreachable queues are not errors (an escalation or a transfer may be the
only way in): ``RoutingConfig.warnings()`` returns them. Fields the engine does not act on yet say so in their
description; they are validated all the same, so a configuration written today keeps its meaning.
"""

import itertools
import re
from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts import Channel
from services.router.domain.model import Presence, Queue

Loc = tuple[str | int, ...]
DEFAULT_OFFER_TIMEOUT_SECONDS = 30.0
_NOT_YET = " (validated; not yet used by the routing engine)"


class Problems(ValueError):
    """Several problems, each at its own location relative to the model raising it (see ``kefu.config_file``)."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {message}" for loc, message in problems))
        self.problems = problems


def _raise_if(problems: list[tuple[Loc, str]]) -> None:
    if problems:
        raise Problems(problems)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r} (for example Asia/Shanghai)") from None
    return name


_RANGE = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


def _minutes(hours: str, minutes: str, *, end: bool) -> int | None:
    h, m = int(hours), int(minutes)
    if (h == 24 and m == 0 and end) or (h < 24 and m < 60):
        return h * 60 + m
    return None


def _time_range(text: str) -> str:
    parsed = _RANGE.match(text)
    if parsed is None:
        raise ValueError(f"{text!r} is not a time range HH:MM-HH:MM")
    start = _minutes(parsed[1], parsed[2], end=False)
    end = _minutes(parsed[3], parsed[4], end=True)
    if start is None or end is None:
        raise ValueError(f"{text!r} is not a valid time (00:00-24:00)")
    if start >= end:
        raise ValueError(f"{text!r}: the start must be before the end (split a range across midnight over two days)")
    return text


TimeZone = Annotated[str, AfterValidator(_time_zone)]
TimeRange = Annotated[str, AfterValidator(_time_range)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Level = Annotated[int, Field(ge=1, le=5)]
Seconds = Annotated[float, Field(gt=0)]


class WeeklySchedule(_Strict):
    time_zone: TimeZone = Field(description="IANA time zone the times are in", examples=["Asia/Shanghai"])
    weekly: dict[Weekday, list[TimeRange]] = Field(
        min_length=1,
        description="day -> ranges HH:MM-HH:MM; a day not listed is closed",
        examples=[{"mon": ["09:00-18:00"]}],
    )

    @model_validator(mode="after")
    def _no_overlaps(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        for day, ranges in self.weekly.items():
            spans = sorted((r, i) for i, r in enumerate(ranges))  # zero-padded HH:MM sorts as text
            for (before, _), (after, i) in itertools.pairwise(spans):
                if after.split("-")[0] < before.split("-")[1]:
                    problems.append((("weekly", day, i), f"{after!r} overlaps {before!r}"))
        _raise_if(problems)
        return self


class Shift(WeeklySchedule):
    """When an agent works; it will set presence automatically."""


class Hours(WeeklySchedule):
    holidays: Literal["CN"] | list[date] = Field(
        default_factory=list,
        description="closed days: CN for Chinese public holidays (make-up working days open), or a list of dates",
    )
    makeup_workdays: list[date] = Field(default_factory=list, description="weekend days that are open with mon hours")
    after_hours: Literal["hold", "overflow", "close"] = Field(
        default="hold", description="hold until open, overflow to the queue's overflow target, or close with a message"
    )
    close_message: str | None = Field(default=None, description="told to the customer when after_hours is close")

    @model_validator(mode="after")
    def _close_message(self) -> Self:
        if self.after_hours == "close" and not self.close_message:
            raise Problems([(("close_message",), "after_hours: close needs a close_message for the customer")])
        return self


class ServiceLevel(_Strict):
    answer_within_seconds: Seconds
    target_percent: float = Field(gt=0, le=100)


class BullseyeStep(_Strict):
    after_seconds: Seconds = Field(description="wait after which this step widens the pool")
    relax: dict[str, Level] = Field(default_factory=dict, description="skill -> lower minimum proficiency")
    drop: list[str] = Field(default_factory=list, description="skills no longer required")

    @model_validator(mode="after")
    def _does_something(self) -> Self:
        if not self.relax and not self.drop:
            raise ValueError("a bullseye step must relax or drop at least one skill")
        return self


class Overflow(_Strict):
    to: str = Field(description="the queue contacts move to")
    after_seconds: Seconds | None = Field(default=None, description="move a contact that waited this long")
    when_waiting_over: int | None = Field(default=None, ge=0, description="move new contacts while more are waiting")


class RoutingPolicy(StrEnum):
    LONGEST_IDLE = "longest_idle"
    MOST_PROFICIENT = "most_proficient"
    LEAST_OCCUPIED = "least_occupied"
    ROUND_ROBIN = "round_robin"


class QueueConfig(_Strict):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    name: str
    channels: list[Channel] = Field(min_length=1)
    skills: dict[str, int] = Field(default_factory=dict, description="skill -> minimum proficiency 1-5")
    priority: int = 0
    offer_timeout_seconds: Seconds | dict[Channel, Seconds] = Field(
        default=DEFAULT_OFFER_TIMEOUT_SECONDS,
        description="one timeout, or one per channel (others 30 s); the engine uses the longest for now",
    )
    aging_per_minute: float = Field(default=0, ge=0, description="priority gained per minute waited" + _NOT_YET)
    service_level: ServiceLevel | None = Field(default=None, description="target reported in queue stats" + _NOT_YET)
    bullseye: list[BullseyeStep] = Field(default_factory=list, description="skill relaxation over wait" + _NOT_YET)
    overflow: Overflow | None = Field(default=None, description="where contacts go on a long wait" + _NOT_YET)
    hours: Hours | None = Field(default=None, description="business hours; always open when absent" + _NOT_YET)
    routing_policy: RoutingPolicy = Field(default=RoutingPolicy.LONGEST_IDLE, description="agent choice" + _NOT_YET)
    auto_accept: bool = Field(default=False, description="assign without an offer to accept" + _NOT_YET)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[Loc, str]] = [
            (("skills", skill), f"skill {skill!r}: minimum proficiency must be 1-5, got {level}")
            for skill, level in self.skills.items()
            if not 1 <= level <= 5
        ]
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
        _raise_if(problems)
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

    def to_domain(self) -> Queue:
        # The engine has one offer timeout per queue: the longest, so that no channel's offers are cut short.
        longest = max(self.offer_timeout_for(ch) for ch in self.channels)
        return Queue(
            id=self.id,
            name=self.name,
            channels=frozenset(self.channels),
            skills=dict(self.skills),
            priority=self.priority,
            offer_timeout=timedelta(seconds=longest),
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
    phone_exclusive: bool = Field(default=False, description="a phone call excludes all other work" + _NOT_YET)
    wrap_up_seconds: float = Field(default=0, ge=0, description="after-contact work before a new offer" + _NOT_YET)
    max_missed_offers: int | None = Field(default=None, ge=1, description="set away after this many" + _NOT_YET)
    shift: Shift | None = Field(default=None, description="sets presence automatically" + _NOT_YET)

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        problems: list[tuple[Loc, str]] = [
            (("skills", skill), f"skill {skill!r}: proficiency must be 1-5, got {level}")
            for skill, level in self.skills.items()
            if not 1 <= level <= 5
        ]
        problems += [
            (("capacity", str(channel)), f"capacity on {channel}: must not be negative")
            for channel, slots in self.capacity.items()
            if slots < 0
        ]
        _raise_if(problems)
        return self

    def can_serve(self, queue: QueueConfig) -> bool:
        """Whether this agent qualifies for ``queue`` at its widest (all bullseye steps applied)."""
        if not any(self.capacity.get(ch, 0) > 0 for ch in queue.channels):
            return False
        return all(self.skills.get(s, 0) >= level for s, level in queue.loosest_requirement().items())


class RouteConfig(_Strict):
    channel: Channel
    account: str | None = Field(default=None, description="the channel account; any when absent")
    queue: str


class CustomerTier(StrEnum):
    STANDARD = "standard"
    VIP = "vip"
    KEY_ACCOUNT = "key_account"


class RuleMatch(_Strict):
    """What a new contact must have for a rule to apply.

    Every condition given must hold, any value of a list will do; keywords and regex are one condition on the first
    message (either finding it is enough).
    """

    channels: list[Channel] = Field(default_factory=list)
    accounts: list[str] = Field(default_factory=list, description="channel account ids")
    keywords: list[str] = Field(default_factory=list, description="in the first message, case-insensitive")
    regex: str | None = Field(default=None, description="searched in the first message, case-insensitive")
    tiers: list[CustomerTier] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list, description="BCP 47 prefixes: zh matches zh-CN")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"the regex does not compile: {exc.msg} at position {exc.pos}") from None
        return pattern

    def matches(
        self, *, channel: Channel, account_id: str, text: str, tier: CustomerTier | None, language: str | None
    ) -> bool:
        """Whether a new contact with these properties satisfies every condition."""
        lang = (language or "").casefold()
        return (
            (not self.channels or channel in self.channels)
            and (not self.accounts or account_id in self.accounts)
            and self._text_matches(text)
            and (not self.tiers or tier in self.tiers)
            and (
                not self.languages
                or any(lang == p.casefold() or lang.startswith(p.casefold() + "-") for p in self.languages)
            )
        )

    def _text_matches(self, text: str) -> bool:
        # keywords and regex are two ways to write one condition on the text: either may find it
        if not self.keywords and self.regex is None:
            return True
        folded = text.casefold()
        return any(k.casefold() in folded for k in self.keywords) or (
            self.regex is not None and re.search(self.regex, text, re.IGNORECASE) is not None
        )


class RuleConfig(_Strict):
    name: str
    match: RuleMatch
    queue: str
    priority: int | None = Field(default=None, description="the contact's priority; the queue's when absent")


class RoutingConfig(_Strict):
    skills: dict[str, str] | None = Field(
        default=None, description="skill id -> description; when given, every skill used must be declared here"
    )
    groups: dict[str, str] | None = Field(
        default=None, description="group id -> description; when given, every agent group must be declared here"
    )
    default_queue: str
    rules: list[RuleConfig] = Field(
        default_factory=list, description="classification, first match wins, before routes" + _NOT_YET
    )
    routes: list[RouteConfig] = Field(default_factory=list)
    queues: list[QueueConfig] = Field(min_length=1)
    agents: list[AgentConfig] = Field(
        default_factory=list,
        description="agents from the file; when there are none (all managed over the API) queues are not checked"
        " for being servable",
    )

    @model_validator(mode="after")
    def _references(self) -> Self:
        problems = self._unique_ids() + self._unknown_queues() + self._unknown_names() + self._overflow_cycles()
        if not problems and self.agents:
            problems += [
                (("queues", i, "skills" if q.skills else "channels"), _unservable(q))
                for i, q in enumerate(self.queues)
                if not any(agent.can_serve(q) for agent in self.agents)
            ]
        _raise_if(problems)
        return self

    def _unique_ids(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        for field, ids in (("queues", [q.id for q in self.queues]), ("agents", [a.id for a in self.agents])):
            for i, name in enumerate(ids):
                if name in ids[:i]:
                    what = field[:-1]
                    problems.append(
                        ((field, i, "id"), f"{what} ids must be unique: {name!r} is also {field}.{ids.index(name)}")
                    )
        return problems

    def _unknown_queues(self) -> list[tuple[Loc, str]]:
        ids = [q.id for q in self.queues]
        used: list[tuple[Loc, str]] = [(("default_queue",), self.default_queue)]
        used += [(("routes", i, "queue"), r.queue) for i, r in enumerate(self.routes)]
        used += [(("rules", i, "queue"), r.queue) for i, r in enumerate(self.rules)]
        used += [(("queues", i, "overflow", "to"), q.overflow.to) for i, q in enumerate(self.queues) if q.overflow]
        return [(loc, f"unknown queue {name!r}; queues are {ids}") for loc, name in used if name not in ids]

    def _unknown_names(self) -> list[tuple[Loc, str]]:
        used_skills: list[tuple[Loc, str]] = []
        for i, q in enumerate(self.queues):
            used_skills += [(("queues", i, "skills", s), s) for s in q.skills]
            for j, step in enumerate(q.bullseye):
                used_skills += [(("queues", i, "bullseye", j, "relax", s), s) for s in step.relax]
                used_skills += [(("queues", i, "bullseye", j, "drop", k), s) for k, s in enumerate(step.drop)]
        for i, a in enumerate(self.agents):
            used_skills += [(("agents", i, "skills", s), s) for s in a.skills]
        problems: list[tuple[Loc, str]] = []
        if self.skills is not None:
            known = sorted(self.skills)
            problems += [
                (loc, f"unknown skill {s!r}; declared skills are {known}")
                for loc, s in used_skills
                if s not in self.skills
            ]
        if self.groups is not None:
            known = sorted(self.groups)
            problems += [
                (("agents", i, "groups", k), f"unknown group {g!r}; declared groups are {known}")
                for i, a in enumerate(self.agents)
                for k, g in enumerate(a.groups)
                if g not in self.groups
            ]
        return problems

    def _overflow_cycles(self) -> list[tuple[Loc, str]]:
        index = {q.id: i for i, q in enumerate(self.queues)}
        target = {q.id: q.overflow.to for q in self.queues if q.overflow is not None}
        reported: set[frozenset[str]] = set()
        problems: list[tuple[Loc, str]] = []
        for start in target:
            path = [start]
            while path[-1] in target and target[path[-1]] not in path:
                path.append(target[path[-1]])
            nxt = target.get(path[-1])
            if nxt is None:
                continue  # the chain ends in a queue without overflow (or an unknown one, reported elsewhere)
            cycle = path[path.index(nxt) :]
            if frozenset(cycle) not in reported:
                reported.add(frozenset(cycle))
                problems.append(
                    (("queues", index[cycle[0]], "overflow", "to"), "overflow cycle: " + " -> ".join([*cycle, nxt]))
                )
        return problems

    def warnings(self) -> list[tuple[Loc, str]]:
        """Queues no rule, route or overflow ever sends a contact to (only escalations and transfers could)."""
        target = {q.id: q.overflow.to for q in self.queues if q.overflow is not None}
        reached: set[str] = set()
        todo = [self.default_queue, *(r.queue for r in self.routes), *(r.queue for r in self.rules)]
        while todo:
            name = todo.pop()
            if name not in reached:
                reached.add(name)
                todo += [target[name]] if name in target else []
        return [
            (("queues", i, "id"), f"queue {q.id!r} is unreachable: no rule, route or overflow sends contacts to it")
            for i, q in enumerate(self.queues)
            if q.id not in reached
        ]

    def queue_for(self, channel: Channel, account_id: str) -> str:
        """The queue a new contact on ``channel``/``account_id`` waits in."""
        for route in self.routes:
            if route.channel == channel and route.account in (None, account_id):
                return route.queue
        return self.default_queue

    def classify(
        self,
        *,
        channel: Channel,
        account_id: str,
        text: str = "",
        tier: CustomerTier | None = None,
        language: str | None = None,
    ) -> tuple[str, int]:
        """The queue and priority of a new contact: the first matching rule, else the routes."""
        priorities = {q.id: q.priority for q in self.queues}
        for rule in self.rules:
            if rule.match.matches(channel=channel, account_id=account_id, text=text, tier=tier, language=language):
                return rule.queue, priorities[rule.queue] if rule.priority is None else rule.priority
        queue = self.queue_for(channel, account_id)
        return queue, priorities[queue]


def _unservable(queue: QueueConfig) -> str:
    need = queue.loosest_requirement()
    skills = f"skills {need} (after every bullseye step)" if need else "no skills"
    channels = [str(c) for c in queue.channels]
    return f"no configured agent can ever serve queue {queue.id!r}: none has {skills} and a slot on {channels}"
