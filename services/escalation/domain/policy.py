"""The ``escalation`` section of the configuration file: targets, levels and triggers.

Validated through ``kefu.config_file.parse_section(source, "escalation", EscalationPolicy)``, so every refusal names
file, line and field. Each model checks its own fields; ``EscalationPolicy`` checks what crosses models: unknown
targets, level cycles and a crisis lexicon that does not compile (it is compiled once, here, and kept).
Group and queue names are the router's. Services do not import each other, so they are checked against the routing
section by ``tools.config_check`` (``kefu config validate`` and the escalation service at start).
"""

import re
from datetime import datetime, tzinfo
from functools import cached_property
from typing import Annotated, Self

from pydantic import Field, HttpUrl, PrivateAttr, field_validator, model_validator

import kefu.schedule
from kefu.config_file import Loc
from kefu.config_schema import Problems, Strict
from services.escalation.domain.lexicon import Lexicon, LexiconError, LexiconList

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")]
Minutes = Annotated[float, Field(gt=0)]


class BusinessHours(kefu.schedule.BusinessHours):
    """When SLA clocks run; outside these hours they pause. The router's queue hours are written the same way."""

    def after_open_seconds(self, start: datetime, seconds: float) -> datetime | None:
        """``calendar().after_open_seconds``, remembered: a contact's clocks are asked again at each of its events."""
        dues = self.remembered_dues
        key = (start, start.tzinfo, seconds)  # the zone too: equal instants in two zones are answered in each's
        if key not in dues:
            if len(dues) >= _REMEMBERED:
                dues.clear()
            dues[key] = self.calendar().after_open_seconds(start, seconds)
        return dues[key]

    @cached_property
    def remembered_dues(self) -> dict[tuple[datetime, tzinfo | None, float], datetime | None]:
        """The due times these hours computed (kept beside the frozen fields, not one of them)."""
        return {}

    @model_validator(mode="after")
    def _open_sometime(self) -> Self:
        """A clock that never runs never reaches its deadline (a queue or a shift may be closed for a while)."""
        if not any(self.weekly.values()):
            raise ValueError("business hours must open on at least one day")
        return self


_REMEMBERED = 10_000
"""Due times a ``BusinessHours`` remembers before it starts again (each a few hundred bytes)."""


class Webhook(Strict):
    """An outbound webhook, signed with the Standard Webhooks secret held in the named environment variable."""

    name: Name
    url: HttpUrl
    secret: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="environment variable holding the whsec_ secret")


class Target(Strict):
    """Who takes over: a router group and the queue its contacts wait in, with the raised priority."""

    group: str = Field(min_length=1, description="the router group, e.g. engineers")
    queue: str = Field(min_length=1, description="the router queue escalated contacts move to")
    priority: int = Field(default=50, description="the contact's priority once escalated; crisis highest")
    fallback_group: str | None = Field(default=None, description="tam: when the customer has no owning TAM")
    notify: list[Webhook] = Field(default_factory=list)


class Level(Strict):
    """An escalation to a target climbs to ``next`` when nobody acknowledges it in time."""

    ack_timeout_seconds: float = Field(gt=0)
    next: str | None = Field(default=None, description="the target it climbs to; the top when absent")


class SlaClockConfig(Strict):
    """Response and resolution times for one queue and tier (absent: any); the first that applies is used."""

    queue: str | None = None
    tier: str | None = None
    first_response_seconds: float | None = Field(default=None, gt=0)
    next_response_seconds: float | None = Field(default=None, gt=0)
    resolution_seconds: float | None = Field(default=None, gt=0)
    warn_at_percent: float | None = Field(default=None, gt=0, lt=100, description="the trigger's when absent")
    hours: BusinessHours | None = Field(default=None, description="the trigger's when absent")

    @model_validator(mode="after")
    def _has_threshold(self) -> Self:
        if all(s is None for s in (self.first_response_seconds, self.next_response_seconds, self.resolution_seconds)):
            raise ValueError("an SLA clock needs first_response_seconds, next_response_seconds or resolution_seconds")
        return self

    def applies(self, queue: str, tier: str) -> bool:
        return self.queue in (None, queue) and self.tier in (None, tier)


class SlaTrigger(Strict):
    target: str = "supervisors"
    warn_at_percent: float = Field(default=80, gt=0, lt=100)
    hours: BusinessHours | None = Field(default=None, description="always counting when absent")
    clocks: list[SlaClockConfig] = Field(min_length=1)

    def clock_for(self, queue: str, tier: str) -> SlaClockConfig | None:
        return next((c for c in self.clocks if c.applies(queue, tier)), None)


class KeyAccountTrigger(Strict):
    target: str = "tam"
    hold_minutes: float = Field(ge=0, description="how long tier 1 may hold a key-account contact; 0: at once")


class TechnicalTrigger(Strict):
    target: str = "engineers"
    categories: list[str] = Field(default_factory=list, description="classified categories that are technical")
    keywords: list[str] = Field(default_factory=list, description="in a customer message, case-insensitive")
    patterns: list[str] = Field(default_factory=list, description="regexes searched in customer messages")
    unresolved_minutes: Minutes | None = None
    max_transfers: int | None = Field(default=None, ge=1, description="escalate at this many transfers")

    @field_validator("patterns")
    @classmethod
    def _compile(cls, patterns: list[str]) -> list[str]:
        problems: list[tuple[Loc, str]] = []
        for i, p in enumerate(patterns):
            try:
                re.compile(p, re.IGNORECASE)
            except re.error as exc:
                problems.append(((i,), f"the pattern {p!r} does not compile: {exc.msg} at position {exc.pos}"))
        if problems:
            raise Problems(problems)
        return patterns

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if not (self.categories or self.keywords or self.patterns):
            raise ValueError("the technical trigger needs categories, keywords or patterns")
        if self.unresolved_minutes is None and self.max_transfers is None:
            raise ValueError("the technical trigger needs unresolved_minutes or max_transfers")
        return self

    def technical_text(self) -> re.Pattern[str] | None:
        """The keywords and patterns as one expression (built once: asked at every evaluation)."""
        return self.compiled_text

    @cached_property
    def compiled_text(self) -> re.Pattern[str] | None:
        parts = [re.escape(k) for k in self.keywords] + [f"(?:{p})" for p in self.patterns]
        return re.compile("|".join(parts), re.IGNORECASE) if parts else None


class CrisisList(Strict):
    terms: list[str] = Field(default_factory=list, description="Chinese: substring; ASCII: whole words")
    patterns: list[str] = Field(default_factory=list, description="regexes, case-insensitive")
    exclusions: list[str] = Field(default_factory=list, description="harmless phrases containing a term")


class CrisisTrigger(Strict):
    target: str = "crisis"
    lexicon: dict[str, CrisisList] = Field(min_length=1, description="category -> words and patterns")
    negation: bool = Field(default=True, description="ignore a term negated in its clause (没有起火, no fire)")
    _compiled: Lexicon | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> Self:
        lists = {k: LexiconList(v.terms, v.patterns, v.exclusions) for k, v in self.lexicon.items()}
        problems: list[tuple[Loc, str]] = [
            (("lexicon", k), f"category {k!r} has no terms and no patterns")
            for k, v in self.lexicon.items()
            if not v.terms and not v.patterns
        ]
        try:
            self._compiled = Lexicon(lists, negation=self.negation)
        except LexiconError as exc:
            problems += [(("lexicon", *loc), message) for loc, message in exc.problems]
        if problems:
            raise Problems(problems)
        return self

    @property
    def compiled(self) -> Lexicon:
        assert self._compiled is not None  # set by the validator that every instance passes through
        return self._compiled


class RepeatContactTrigger(Strict):
    target: str = "supervisors"
    contacts: int = Field(ge=2, description="this many contacts of one customer, this one included")
    within_hours: float = Field(gt=0)


class ManualTrigger(Strict):
    allowed_targets: list[str] = Field(min_length=1)


class Triggers(Strict):
    sla: SlaTrigger | None = None
    key_account: KeyAccountTrigger | None = None
    technical: TechnicalTrigger | None = None
    crisis: CrisisTrigger | None = None
    repeat_contact: RepeatContactTrigger | None = None
    manual: ManualTrigger | None = None


class EscalationPolicy(Strict):
    targets: dict[Name, Target] = Field(min_length=1)
    levels: dict[str, Level] = Field(default_factory=dict, description="target -> acknowledgement timeout and next")
    triggers: Triggers = Field(default_factory=Triggers)

    @model_validator(mode="after")
    def _references(self) -> Self:
        known = sorted(self.targets)
        refs: list[tuple[Loc, str]] = [(("levels", t), t) for t in self.levels]
        refs += [(("levels", t, "next"), lv.next) for t, lv in self.levels.items() if lv.next is not None]
        for name in ("sla", "key_account", "technical", "crisis", "repeat_contact"):
            trigger = getattr(self.triggers, name)
            if trigger is not None:
                refs.append((("triggers", name, "target"), trigger.target))
        if self.triggers.manual is not None:
            allowed = enumerate(self.triggers.manual.allowed_targets)
            refs += [(("triggers", "manual", "allowed_targets", i), t) for i, t in allowed]
        problems = [
            (loc, f"unknown target {t!r}; declared targets are {known}") for loc, t in refs if t not in self.targets
        ]
        problems += self._cycles()
        if problems:
            raise Problems(problems)
        return self

    def _cycles(self) -> list[tuple[Loc, str]]:
        reported: set[frozenset[str]] = set()
        problems: list[tuple[Loc, str]] = []
        for start in self.levels:
            path = [start]
            while (nxt := self._next(path[-1])) is not None and nxt not in path:
                path.append(nxt)
            if nxt is not None:
                cycle = path[path.index(nxt) :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    problems.append((("levels", cycle[0], "next"), "level cycle: " + " -> ".join([*cycle, nxt])))
        return problems

    def _next(self, target: str) -> str | None:
        level = self.levels.get(target)
        return None if level is None else level.next

    def climb(self, target: str) -> str | None:
        """The target an unacknowledged escalation to ``target`` climbs to, if any."""
        return self._next(target)
