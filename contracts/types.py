"""Building blocks shared by every contract model."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Contract(BaseModel):
    """Base of every event and command: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Channel(StrEnum):
    """The channel a customer used."""

    WEBCHAT = "webchat"
    EMAIL = "email"
    WECHAT = "wechat"
    DOUYIN = "douyin"
    PHONE = "phone"


Timestamp = Annotated[
    AwareDatetime,
    Field(description="An instant with its UTC offset (RFC 3339).", examples=["2026-11-22T09:30:00+08:00"]),
]

__all__ = ["Channel", "Contract", "Timestamp", "datetime"]
