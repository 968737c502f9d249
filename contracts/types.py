"""Building blocks shared by every contract model."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from contracts.text import storable_value


class Contract(BaseModel):
    """Base of every event and command: immutable, strict about unknown fields, its text storable.

    Every string field (and every string in a field's container) passes through ``contracts.text.storable``: NUL
    and lone surrogates, which PostgreSQL cannot store, become U+FFFD, for the adapters that build events and the
    consumers that parse them alike.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable_value(value)


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
