"""Escalation case lifecycle events."""

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import Field

from contracts.types import Contract, Timestamp


class EscalationStatus(StrEnum):
    """Where a case stands."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


class EscalationEvent(Contract):
    """A change of an escalation case, published to ``kefu.escalations.v1``."""

    schema_version: Literal[1] = Field(default=1, description="Version of this schema.")
    event_id: UUID = Field(description="Unique id of this event.")
    case_id: UUID = Field(description="The escalation case.")
    contact_id: UUID = Field(description="The contact escalated.")
    trigger: str = Field(max_length=128, description="What fired.", examples=["sla_breach"])
    target: str = Field(max_length=128, description="Who must take over.", examples=["engineers"])
    level: int = Field(ge=1, description="Escalation level, 1 first.", examples=[1])
    status: EscalationStatus = Field(description="The case's status after this change.", examples=["open"])
    occurred_at: Timestamp = Field(description="When it changed.")
    reason: str = Field(default="", max_length=1024, description="Evidence, in words.")
