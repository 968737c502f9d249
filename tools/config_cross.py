"""The checks that span two services' sections: channel accounts and the escalation policy against the routing.

Services do not import each other, so neither model can check the other's names; ``tools.config_check`` holds them
all and runs these for ``kefu config validate`` and for every service at start. Locations are relative to the
section checked (``channels``, ``escalation``).
"""

from typing import TYPE_CHECKING

from contracts import Channel

if TYPE_CHECKING:  # the models of the sections checked, imported by tools.config_check when a file has them
    from services.channels.accounts import ChannelsConfig
    from services.escalation.domain.policy import EscalationPolicy, Target
    from services.router.domain.config import RoutingConfig

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


# the channel of the contacts each list of accounts sends (WeCom customer service is WeChat to the router)
ACCOUNT_CHANNELS: dict[str, Channel] = {
    "webchat": Channel.WEBCHAT,
    "wechat": Channel.WECHAT,
    "wecom_kf": Channel.WECHAT,
    "douyin": Channel.DOUYIN,
    "email": Channel.EMAIL,
    "phone": Channel.PHONE,
}


def channel_problems(channels: "ChannelsConfig", routing: "RoutingConfig") -> list[Problem]:
    """Accounts whose contacts, when no rule places them, go to a queue that does not accept their channel."""
    queues = {q.id: q for q in routing.queues}
    problems: list[Problem] = []
    for field, channel in ACCOUNT_CHANNELS.items():
        for i, account in enumerate(getattr(channels, field)):
            queue = queues.get(routing.queue_for(channel, account.id))
            if queue is not None and channel not in queue.channels:
                how = "no route sends them elsewhere, so" if queue.id == routing.default_queue else "a route sends them"
                problems.append(
                    (
                        (field, i, "id"),
                        f"{channel} contacts of account {account.id!r}: {how} to queue {queue.id!r}, which does not"
                        f" accept {channel} (its channels are {[str(c) for c in queue.channels]}); route them to one"
                        " that does",
                    )
                )
    return problems


def escalation_problems(policy: "EscalationPolicy", routing: "RoutingConfig") -> tuple[list[Problem], list[Problem]]:
    """The errors (a target naming a router group or queue that does not exist) and the warnings of ``policy``."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    queues = {q.id: q for q in routing.queues}
    groups = routing.group_ids()
    for name, target in policy.targets.items():
        at: Loc = ("targets", name)
        queue = queues.get(target.queue)
        if queue is None:
            errors.append(((*at, "queue"), f"unknown router queue {target.queue!r}; the router's are {sorted(queues)}"))
        for field in ("group", "fallback_group"):
            group = getattr(target, field)
            if group is not None and groups is not None and group not in groups:
                errors.append(((*at, field), f"unknown router group {group!r}; the router's are {sorted(groups)}"))
        if queue is not None:
            warnings += _doubtful_target(at, target, queue.group, [str(c) for c in queue.channels], routing)
    warnings += _source_is_target(policy, routing)
    return errors, warnings


def _doubtful_target(
    at: Loc, target: "Target", queue_group: str | None, accepted: list[str], routing: "RoutingConfig"
) -> list[Problem]:
    warnings: list[Problem] = []
    if queue_group is not None and queue_group not in (target.group, target.fallback_group):
        warnings.append(
            ((*at, "group"), f"queue {target.queue!r} is served by group {queue_group!r}, not {target.group!r}")
        )
    elsewhere = sorted({str(c) for q in routing.queues for c in q.channels} - set(accepted))
    if elsewhere:
        warnings.append(
            (
                (*at, "queue"),
                f"queue {target.queue!r} does not accept {', '.join(elsewhere)}: a contact on "
                f"{'that channel' if len(elsewhere) == 1 else 'those channels'} escalated here would wait for ever",
            )
        )
    return warnings


def _source_is_target(policy: "EscalationPolicy", routing: "RoutingConfig") -> list[Problem]:
    """Triggers whose contacts already wait in the target's queue: escalating moves nobody anywhere."""
    warnings: list[Problem] = []
    triggers = policy.triggers
    if triggers.sla is not None:
        sla = triggers.sla
        to = policy.targets[sla.target].queue
        warnings += [
            (("triggers", "sla", "clocks", i, "queue"), _same_queue(to, sla.target))
            for i, clock in enumerate(sla.clocks)
            if clock.queue == to
        ]
    if triggers.technical is not None:
        technical = triggers.technical
        to = policy.targets[technical.target].queue
        placed: dict[str, set[str]] = {}
        for rule in routing.rules:
            placed.setdefault(rule.name, set()).add(rule.queue)
        for k, category in enumerate(technical.categories):
            loc: Loc = ("triggers", "technical", "categories", k)
            if category not in placed:
                warnings.append(
                    (loc, f"no routing rule is named {category!r}; a contact's category is the name of its rule")
                )
            elif to in placed[category]:
                warnings.append((loc, _same_queue(to, technical.target)))
    return warnings


def _same_queue(queue: str, target: str) -> str:
    return f"these contacts wait in queue {queue!r}, the queue of target {target!r}: escalating them moves nobody"
