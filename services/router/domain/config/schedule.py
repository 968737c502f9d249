"""Weekly hours, shifts and business hours with time zone and holidays."""

import itertools
import re
from datetime import date
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, model_validator

from kefu.calendar import BusinessCalendar, Weekday
from services.router.domain.config.common import Loc, Problems, Strict, raise_if


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r} (for example Asia/Shanghai)") from None
    return name


_RANGE = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


def _minutes(hours: str, minutes: str, *, end: bool) -> int | None:
    h, m = int(hours), int(minutes)
    if (h == 24 and m == 0 and end) or (h < 24 and m < 60):
        return h * 60 + m
    return None


def _time_range(text: str) -> str:
    parsed = _RANGE.match(text)
    if parsed is None:
        raise ValueError(f"{text!r} is not a time range HH:MM-HH:MM")
    start = _minutes(parsed[1], parsed[2], end=False)
    end = _minutes(parsed[3], parsed[4], end=True)
    if start is None or end is None:
        raise ValueError(f"{text!r} is not a valid time (00:00-24:00)")
    if start >= end:
        raise ValueError(f"{text!r}: the start must be before the end (split a range across midnight over two days)")
    return text


TimeZone = Annotated[str, AfterValidator(_time_zone)]
TimeRange = Annotated[str, AfterValidator(_time_range)]
Level = Annotated[int, Field(ge=1, le=5)]
Seconds = Annotated[float, Field(gt=0)]


class WeeklySchedule(Strict):
    time_zone: TimeZone = Field(description="IANA time zone the times are in", examples=["Asia/Shanghai"])
    weekly: dict[Weekday, list[TimeRange]] = Field(
        min_length=1,
        description="day -> ranges HH:MM-HH:MM; a day not listed is closed",
        examples=[{"mon": ["09:00-18:00"]}],
    )

    @model_validator(mode="after")
    def _no_overlaps(self) -> Self:
        problems: list[tuple[Loc, str]] = []
        for day, ranges in self.weekly.items():
            spans = sorted((r, i) for i, r in enumerate(ranges))  # zero-padded HH:MM sorts as text
            for (before, _), (after, i) in itertools.pairwise(spans):
                if after.split("-")[0] < before.split("-")[1]:
                    problems.append((("weekly", day, i), f"{after!r} overlaps {before!r}"))
        raise_if(problems)
        return self

    def calendar(self) -> BusinessCalendar:
        """These hours as the shared business calendar, which answers is-open and next-open questions."""
        return BusinessCalendar.build(self.time_zone, self.weekly)


class Shift(WeeklySchedule):
    """When an agent works: the shift loop makes them available when it starts and offline when it ends."""


class Hours(WeeklySchedule):
    holidays: Literal["CN"] | list[Literal["CN"] | date] = Field(
        default_factory=list,
        description="closed days: CN for Chinese public holidays (their official make-up working days open with mon"
        " hours), a list of dates, or both ([CN, 2026-12-24])",
    )
    makeup_workdays: list[date] = Field(default_factory=list, description="weekend days that are open with mon hours")
    after_hours: Literal["hold", "overflow", "close"] = Field(
        default="hold", description="hold until open, overflow to the queue's overflow target, or close with a message"
    )
    close_message: str | None = Field(default=None, description="told to the customer when after_hours is close")

    @model_validator(mode="after")
    def _close_message(self) -> Self:
        if self.after_hours == "close" and not self.close_message:
            raise Problems([(("close_message",), "after_hours: close needs a close_message for the customer")])
        return self

    def calendar(self) -> BusinessCalendar:
        """These hours with their holidays and make-up working days, as the shared business calendar."""
        return BusinessCalendar.build(
            self.time_zone, self.weekly, holidays=self.holidays, makeup_workdays=self.makeup_workdays
        )
