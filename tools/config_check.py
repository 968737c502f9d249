"""What a configuration must be, in one place: checked by ``kefu config validate FILE...`` and by each service at start.

The files are read together. Each top-level section (channels, routing, escalation, auth) may be in any of them, but
in one only. Every section is validated, then what crosses sections and files (``tools.config_cross``): every
channel account's contacts reach a queue that accepts their channel, every escalation target names a router group
and queue that exist. One run lists every problem, each as ``file:line: field: message``. Warnings (a queue nothing
routes to, a trigger escalating contacts into the queue they are already in) do not make the files invalid.

A service calls ``at_start`` with the files it reads: it refuses to start on an error (``ConfigError``, one line per
problem) and logs the warnings.
"""

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pydantic import BaseModel

from kefu.config_file import ConfigError, Report, Source, parse_section, read
from tools.config_cross import channel_problems, escalation_problems

if TYPE_CHECKING:
    from services.channels.accounts import ChannelsConfig
    from services.escalation.domain.policy import EscalationPolicy
    from services.router.domain.config import RoutingConfig

# each section's model, imported when a file has the section: a service imports the models of the sections it reads,
# not every service's (the router's kefu.yaml has no escalation section: no policy engine imported to start it)
SECTIONS: dict[str, str] = {
    "channels": "services.channels.accounts:ChannelsConfig",
    "routing": "services.router.domain.config:RoutingConfig",
    "escalation": "services.escalation.domain.policy:EscalationPolicy",
    "auth": "kefu.auth:AuthConfig",
}


def section_model(name: str) -> type[BaseModel]:
    """The model of the section ``name`` (one of ``SECTIONS``)."""
    module, _, model = SECTIONS[name].partition(":")
    found: type[BaseModel] = getattr(importlib.import_module(module), model)
    return found


def group_members(report: Report) -> dict[str, frozenset[str]]:
    """Each router group's agents, as the routing section lists them (none without one)."""
    routing = cast("RoutingConfig | None", report.sections.get("routing"))
    members: dict[str, set[str]] = {}
    for agent in routing.agents if routing is not None else []:
        for group in agent.groups:
            members.setdefault(group, set()).add(agent.id)
    return {group: frozenset(agents) for group, agents in members.items()}


def check(paths: Sequence[Path], *, required: Sequence[str] = ()) -> Report:
    """Check the configuration files at ``paths`` together; a section in ``required`` must be in one of them."""
    errors: list[str] = []
    warnings: list[str] = []
    sources, complete = _sections(paths, errors, warnings)
    sections: dict[str, BaseModel] = {}
    for name, source in sources.items():
        try:
            sections[name] = parse_section(source, name, section_model(name))
        except ConfigError as exc:
            errors += exc.errors
    if complete:  # an unreadable file may hold what is missing
        named = ", ".join(str(p) for p in paths)
        errors += [f"{named}: no {name} section (kefu needs one here)" for name in required if name not in sources]
    # a section in ``sections`` was parsed with its model (``section_model``)
    routing = cast("RoutingConfig | None", sections.get("routing"))
    policy = cast("EscalationPolicy | None", sections.get("escalation"))
    accounts = cast("ChannelsConfig | None", sections.get("channels"))
    if routing is not None:
        escalated = [t.queue for t in policy.targets.values()] if policy is not None else []
        warnings += [
            f"{sources['routing'].where(('routing', *loc))}: {msg}" for loc, msg in routing.warnings(escalated)
        ]
    if accounts is not None and routing is not None:
        errors += [
            f"{sources['channels'].where(('channels', *loc))}: {msg}"
            for loc, msg in channel_problems(accounts, routing)
        ]
    if policy is not None:
        place = sources["escalation"]
        if routing is not None:
            wrong, doubtful = escalation_problems(policy, routing)
            errors += [f"{place.where(('escalation', *loc))}: {msg}" for loc, msg in wrong]
            warnings += [f"{place.where(('escalation', *loc))}: {msg}" for loc, msg in doubtful]
        elif "routing" not in sources:
            warnings.append(
                f"{place.where(('escalation', 'targets'))}: not checked against the router's groups and queues:"
                " give the file with the routing section too"
            )
    return Report(errors, warnings, sections)


def at_start(paths: Sequence[Path], *, required: Sequence[str], log: logging.Logger | None) -> Report:
    """``check`` for a service about to start: ``ConfigError`` lists every error; warnings go to ``log``."""
    report = check(paths, required=required)
    if report.errors:
        raise ConfigError(report.errors)
    if log is not None:
        log_warnings(report, log)
    return report


def log_warnings(report: Report, log: logging.Logger) -> None:
    """Log each warning of ``report`` on ``log``."""
    for line in report.warnings:
        log.warning("configuration: %s", line)


def _sections(paths: Sequence[Path], errors: list[str], warnings: list[str]) -> tuple[dict[str, Source], bool]:
    """Each known section and the file it is in, and whether every file could be read.

    A section in two files, or a file with none, is an error.
    """
    sources: dict[str, Source] = {}
    complete = True
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            continue  # the same file named twice (the policy in the configuration file itself) is read once
        seen.add(path.resolve())
        try:
            source = read(path)
        except ConfigError as exc:
            errors += exc.errors
            complete = False
            continue
        known = [name for name in source.data if name in SECTIONS]
        if not known:
            errors.append(f"{path}: none of the sections kefu reads ({', '.join(SECTIONS)})")
        warnings += [
            f"{source.where((name,))}: not a section kefu reads ({', '.join(SECTIONS)}); ignored"
            for name in source.data
            if name not in SECTIONS
        ]
        for name in known:
            if name in sources:
                errors.append(
                    f"{source.where((name,))}: also in {sources[name].at((name,))}; a section must be in one file only"
                )
            else:
                sources[name] = source
    return sources, complete


def main(paths: Sequence[Path]) -> int:
    """Print ``OK`` and the warnings, or the errors; the exit status: 0 when valid, 1 when not."""
    report = check(paths)
    for line in report.errors or ["OK"]:
        print(line)
    for line in report.warnings:
        print(f"warning: {line}")
    return 1 if report.errors else 0
