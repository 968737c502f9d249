"""Queue hours and agent shifts: the kit's business-hours schema (``kefu.schedule``), plus what the router does after
hours. The escalation service's SLA hours use the same schema, so both read a configuration's hours alike."""

from typing import Literal, Self

from pydantic import Field, model_validator

from kefu.config_schema import Problems
from kefu.schedule import BusinessHours, WeeklySchedule


class Shift(WeeklySchedule):
    """When an agent works: the shift loop makes them available when it starts and offline when it ends."""


class Hours(BusinessHours):
    """When a queue serves, and what happens to a contact that arrives while it is closed."""

    after_hours: Literal["hold", "overflow", "close"] = Field(
        default="hold", description="hold until open, overflow to the queue's overflow target, or close with a message"
    )
    close_message: str | None = Field(default=None, description="told to the customer when after_hours is close")

    @model_validator(mode="after")
    def _close_message(self) -> Self:
        """A customer turned away after hours must be told why; the message is theirs, there is no default."""
        if self.after_hours == "close" and not self.close_message:
            raise Problems([(("close_message",), "after_hours: close needs a close_message for the customer")])
        return self
