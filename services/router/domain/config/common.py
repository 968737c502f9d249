"""Shared pieces of the routing configuration models: proficiency levels, durations and the default offer timeout.

Strictness and collected problems are every section's, in ``kefu.config_schema``."""

from typing import Annotated

from pydantic import Field

DEFAULT_OFFER_TIMEOUT_SECONDS = 30.0
Level = Annotated[int, Field(ge=1, le=5)]
Seconds = Annotated[float, Field(gt=0)]
