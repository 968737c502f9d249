"""The configuration file: one YAML document, one top-level section per service."""

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; the message says where."""


def load_section(path: Path, section: str, model: type[M]) -> M:
    """Parse the top-level ``section`` of the YAML file at ``path`` as ``model``."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    try:
        return model.model_validate(document.get(section, {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in (section, *err['loc']))}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
