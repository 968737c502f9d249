"""``kefu config validate FILE``: check a configuration file without starting anything.

Every section a service would load is validated, so one run lists every problem of the file, each as
``file:line: field: message``. Warnings (a queue nothing routes to) do not make the file invalid.
"""

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from kefu.config_file import ConfigError, Source, parse_section, read
from services.channels.domain.accounts import ChannelsConfig
from services.router.domain.config import RoutingConfig

M = TypeVar("M", bound=BaseModel)


def validate_file(path: Path) -> tuple[list[str], list[str]]:
    """The errors and the warnings of the configuration file at ``path``; valid when there are no errors."""
    try:
        source = read(path)
    except ConfigError as exc:
        return exc.errors, []
    errors: list[str] = []
    _check(source, "channels", ChannelsConfig, errors)
    routing = _check(source, "routing", RoutingConfig, errors)
    warnings = (
        [] if routing is None else [f"{source.where(('routing', *loc))}: {msg}" for loc, msg in routing.warnings()]
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
