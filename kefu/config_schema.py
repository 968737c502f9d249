"""The building blocks every section of the configuration file is modelled with.

Each service validates its own section, but all of them must refuse the same way: an unknown or misspelt field is
an error (not silently ignored), a validated configuration cannot be changed behind the validator's back, and a model
that finds several problems reports each at its own place so that ``kefu.config_file`` can name its line.
"""

from pydantic import BaseModel, ConfigDict

from kefu.config_file import Loc


class Problems(ValueError):
    """Several problems, each at its own location relative to the model raising it (see ``kefu.config_file``)."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {message}" for loc, message in problems))
        self.problems = problems


def raise_if(problems: list[tuple[Loc, str]]) -> None:
    """Raise the problems a validator collected, if it found any, so it can report all of them at once."""
    if problems:
        raise Problems(problems)


class Strict(BaseModel):
    """A configuration model: unknown fields are refused (a typo must not pass for a default) and it is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
