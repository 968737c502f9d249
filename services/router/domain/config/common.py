"""Shared pieces of the routing configuration models: proficiency levels (and their check on a skills map),
durations and the default offer timeout.

Strictness and collected problems are every section's, in ``kefu.config_schema``."""

from collections.abc import Mapping
from typing import Annotated

from pydantic import Field

from kefu.config_file import Loc

DEFAULT_OFFER_TIMEOUT_SECONDS = 30.0
Level = Annotated[int, Field(ge=1, le=5)]
Seconds = Annotated[float, Field(gt=0)]


def level_problems(skills: Mapping[str, int], level_name: str) -> list[tuple[Loc, str]]:
    """The skills of a ``skill -> level`` map whose level is not 1-5, each at ``("skills", skill)``; ``level_name``
    names the level in the message (an agent's "proficiency", a queue's "minimum proficiency")."""
    return [
        (("skills", skill), f"skill {skill!r}: {level_name} must be 1-5, got {level}")
        for skill, level in skills.items()
        if not 1 <= level <= 5
    ]
