"""The whole ``routing`` section and the checks that span its parts."""

from collections.abc import Iterable
from typing import NamedTuple, Self

from pydantic import Field, model_validator

from contracts import Channel
from kefu.config_file import Loc
from kefu.config_schema import Strict, raise_if
from services.router.domain.config.agents import AgentConfig
from services.router.domain.config.queues import QueueConfig
from services.router.domain.config.rules import CustomerTier, RouteConfig, RuleConfig


class Classification(NamedTuple):
    """Where a new contact waits, how urgent it is, and the rule that said so (its category)."""

    queue: str
    priority: int
    category: str | None


class StickyConfig(Strict):
    """Sticky routing: a contact first waits a little for the agent who knows the customer."""

    window_minutes: float = Field(
        default=1440, gt=0, description="a customer whose last assignment ended this recently is returning"
    )
    wait_seconds: float = Field(default=60, ge=0, description="how long a returning customer waits for the last agent")
    key_account_wait_seconds: float = Field(
        default=120, ge=0, description="how long a key account's contact waits for its owning TAM"
    )


class RoutingConfig(Strict):
    skills: dict[str, str] | None = Field(
        default=None, description="skill id -> description; when given, every skill used must be declared here"
    )
    groups: dict[str, str] | None = Field(
        default=None, description="group id -> description; when given, every agent group must be declared here"
    )
    default_queue: str
    rules: list[RuleConfig] = Field(default_factory=list, description="classification, first match wins, before routes")
    routes: list[RouteConfig] = Field(default_factory=list)
    sticky: StickyConfig | None = Field(
        default=None, description="prefer the customer's last agent or owning TAM for a while; off when absent"
    )
    queues: list[QueueConfig] = Field(min_length=1)
    agents: list[AgentConfig] = Field(
        default_factory=list,
        description="agents from the file; when there are none (all managed over the API) queues are not checked"
        " for being servable",
    )

    @model_validator(mode="after")
    def _references(self) -> Self:
        problems = self._unique_ids() + self._unknown_queues() + self._unknown_names() + self._overflow_cycles()
        problems += self._channels_refused()
        if self.agents:
            problems += self._unservable(reported={loc[1] for loc, _ in problems if loc[0] == "queues"})
        raise_if(problems)
        return self

    def _channels_refused(self) -> list[tuple[Loc, str]]:
        # a contact sent to a queue that does not accept its channel is never offered to anyone: it waits for ever
        queues = {q.id: q for q in self.queues}
        sent: list[tuple[Loc, str, list[Channel]]] = [
            (("routes", i, "queue"), r.queue, [r.channel]) for i, r in enumerate(self.routes)
        ]
        sent += [
            (("rules", i, "match", "channels", k), r.queue, [channel])
            for i, r in enumerate(self.rules)
            for k, channel in enumerate(r.match.channels)
        ]
        sent += [
            (("queues", i, "overflow", "to"), q.overflow.to, q.channels)
            for i, q in enumerate(self.queues)
            if q.overflow
        ]
        problems: list[tuple[Loc, str]] = []
        for loc, name, channels in sent:
            target = queues.get(name)
            refused = [str(c) for c in channels if target is not None and c not in target.channels]
            if target is not None and refused:
                accepted = [str(c) for c in target.channels]
                problems.append(
                    (loc, f"queue {name!r} does not accept {', '.join(refused)}; its channels are {accepted}")
                )
        return problems

    def _unservable(self, *, reported: set[str | int]) -> list[tuple[Loc, str]]:
        # per (queue, channel): agents who serve the queue on other channels do nothing for this channel's contacts
        return [
            (("queues", i, "channels", j), _unservable(q, channel))
            for i, q in enumerate(self.queues)
            if i not in reported  # a queue with its own problems: those first
            for j, channel in enumerate(q.channels)
            if not any(agent.can_serve(q, channel) for agent in self.agents)
        ]

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
            problems += [
                (("queues", i, "group"), f"unknown group {q.group!r}; declared groups are {known}")
                for i, q in enumerate(self.queues)
                if q.group is not None and q.group not in self.groups
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

    def warnings(self, escalated_to: Iterable[str] = ()) -> list[tuple[Loc, str]]:
        """Queues no rule, route, overflow or escalation (``escalated_to``: the policy's target queues, when it is
        checked along) ever sends a contact to (only transfers could)."""
        target = {q.id: q.overflow.to for q in self.queues if q.overflow is not None}
        reached: set[str] = set()
        todo = [self.default_queue, *(r.queue for r in self.routes), *(r.queue for r in self.rules), *escalated_to]
        while todo:
            name = todo.pop()
            if name not in reached:
                reached.add(name)
                todo += [target[name]] if name in target else []
        return [
            (("queues", i, "id"), f"queue {q.id!r} is unreachable: no rule, route, overflow or escalation sends to it")
            for i, q in enumerate(self.queues)
            if q.id not in reached
        ]

    def group_ids(self) -> set[str] | None:
        """The router's groups: those declared, else every group of an agent or queue in the file; None when the
        file cannot tell (no groups declared and no agents: they are all managed over the API)."""
        if self.groups is not None:
            return set(self.groups)
        if not self.agents:
            return None
        return {g for a in self.agents for g in a.groups} | {q.group for q in self.queues if q.group is not None}

    def queue_of_group(self, group: str) -> str | None:
        """The queue escalations to ``group`` land in: the first queue served by that group."""
        return next((q.id for q in self.queues if q.group == group), None)

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
    ) -> Classification:
        """The queue, priority and category of a new contact: the first matching rule, else the routes."""
        priorities = {q.id: q.priority for q in self.queues}
        for rule in self.rules:
            if rule.match.matches(channel=channel, account_id=account_id, text=text, tier=tier, language=language):
                priority = priorities[rule.queue] if rule.priority is None else rule.priority
                return Classification(rule.queue, priority, rule.name)
        queue = self.queue_for(channel, account_id)
        return Classification(queue, priorities[queue], None)


def _unservable(queue: QueueConfig, channel: Channel) -> str:
    need = queue.loosest_requirement()
    wanted = [f"a slot on {channel}"]
    wanted += [f"group {queue.group!r}"] if queue.group is not None else []
    wanted += [f"skills {need} (after every bullseye step)"] if need else []
    wants = wanted[0] if len(wanted) == 1 else ", ".join(wanted[:-1]) + " and " + wanted[-1]
    return f"no configured agent can ever serve {channel} contacts in queue {queue.id!r}: none has {wants}"
