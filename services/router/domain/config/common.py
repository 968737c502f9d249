"""Shared pieces of the routing configuration models: strictness and collected problems."""

from pydantic import BaseModel, ConfigDict

Loc = tuple[str | int, ...]
DEFAULT_OFFER_TIMEOUT_SECONDS = 30.0


class Problems(ValueError):
    """Several problems, each at its own location relative to the model raising it (see ``kefu.config_file``)."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {message}" for loc, message in problems))
        self.problems = problems


def raise_if(problems: list[tuple[Loc, str]]) -> None:
    if problems:
        raise Problems(problems)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
