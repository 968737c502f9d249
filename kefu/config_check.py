"""``kefu config validate FILE``: check a configuration file without starting anything.

Every section a service would load is validated, so one run lists every problem of the file, each as
``file:line: field: message``. Warnings (a queue nothing routes to) do not make the file invalid.
"""

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from kefu.auth import AuthConfig
from kefu.config_file import ConfigError, Source, parse_section, read
from services.channels.domain.accounts import ChannelsConfig
from services.escalation.domain.policy import EscalationPolicy
from services.router.domain.config import RoutingConfig

M = TypeVar("M", bound=BaseModel)

SECTIONS: dict[str, type[BaseModel]] = {
    "channels": ChannelsConfig,
    "routing": RoutingConfig,
    "escalation": EscalationPolicy,
    "auth": AuthConfig,
}


def validate_file(path: Path) -> tuple[list[str], list[str]]:
    """The errors and the warnings of the configuration file at ``path``; valid when there are no errors.

    Each known section the file has is checked (a file may hold them all, or only an escalation policy).
    """
    try:
        source = read(path)
    except ConfigError as exc:
        return exc.errors, []
    present = [name for name in SECTIONS if name in source.data]
    if not present:
        return [f"{path}: none of the sections kefu reads ({', '.join(SECTIONS)})"], []
    errors: list[str] = []
    checked = {name: _check(source, name, SECTIONS[name], errors) for name in present}
    routing = checked.get("routing")
    warnings = (
        [f"{source.where(('routing', *loc))}: {msg}" for loc, msg in routing.warnings()]
        if isinstance(routing, RoutingConfig)
        else []
    )
    return errors, warnings


def _check(source: Source, section: str, model: type[M], errors: list[str]) -> M | None:
    try:
        return parse_section(source, section, model)
    except ConfigError as exc:
        errors += exc.errors
        return None


def main(path: Path) -> int:
    """Print ``OK`` and the warnings, or the errors; the exit status: 0 when valid, 1 when not."""
    errors, warnings = validate_file(path)
    for line in errors or ["OK"]:
        print(line)
    for line in warnings:
        print(f"warning: {line}")
    return 1 if errors else 0
