"""Business hours in the configuration file: one schema for every service that asks "is it open?".

The router's queue hours and agent shifts and the escalation service's SLA hours are written the same way (a time
zone, ranges per weekday, closed and make-up days) and checked by the same rules here, so a configuration that one
section accepts means the same thing in another. ``calendar()`` turns a validated schedule into the
``kefu.calendar.BusinessCalendar`` that answers the questions; the time ranges are read by its ``parse_range`` both
when validated and when used.
"""

from collections.abc import Iterator
from datetime import date
from functools import cached_property
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, model_validator

from kefu.calendar import BusinessCalendar, Weekday, parse_range
from kefu.config_file import Loc
from kefu.config_schema import Strict, raise_if


def _time_zone(name: str) -> str:
    """Refuse a zone the calendar could not load, when the file is read rather than on the first question."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r} (for example Asia/Shanghai)") from None
    return name


def _time_range(text: str) -> str:
    """Keep the text as written (it is shown and stored that way) once the calendar can read it."""
    parse_range(text)
    return text


TimeZone = Annotated[str, AfterValidator(_time_zone)]
TimeRange = Annotated[str, AfterValidator(_time_range)]


class WeeklySchedule(Strict):
    """Open ranges per weekday in a time zone: an agent's shift, and the base of ``BusinessHours``."""

    time_zone: TimeZone = Field(description="IANA time zone the times are in", examples=["Asia/Shanghai"])
    weekly: dict[Weekday, list[TimeRange]] = Field(
        min_length=1,
        description="day -> ranges HH:MM-HH:MM; a day not listed is closed",
        examples=[{"mon": ["09:00-18:00"]}],
    )

    @model_validator(mode="after")
    def _no_overlaps(self) -> Self:
        """Overlapping ranges would count their common time twice (an SLA clock would run double there)."""
        problems: list[tuple[Loc, str]] = [
            (("weekly", day, i), message) for day, ranges in self.weekly.items() for i, message in _overlaps(ranges)
        ]
        raise_if(problems)
        return self

    def calendar(self) -> BusinessCalendar:
        """These hours as the shared business calendar, which answers is-open and next-open questions; built once,
        since hours and calendar are both immutable (the escalation service asks at every evaluation: building it
        each time was a sixth of its CPU, issue 12)."""
        return self.built_calendar

    @cached_property
    def built_calendar(self) -> BusinessCalendar:
        """The calendar ``calendar`` answers with (kept beside the frozen fields, not one of them)."""
        return self._build_calendar()

    def _build_calendar(self) -> BusinessCalendar:
        return BusinessCalendar.build(self.time_zone, self.weekly)


def _overlaps(ranges: list[str]) -> Iterator[tuple[int, str]]:
    """(index, message) of each range that starts before an earlier-starting one ends.

    Each is compared with the range reaching furthest before it, not just its neighbour, so a range inside another is
    caught even when a third lies between them.
    """
    reach_end, reach = -1, ""
    for start, end, text, i in sorted((*parse_range(text), text, i) for i, text in enumerate(ranges)):
        if start < reach_end:
            yield i, f"{text!r} overlaps {reach!r}"
        if end > reach_end:
            reach_end, reach = end, text


class BusinessHours(WeeklySchedule):
    """Weekly hours with the days that override them: closed dates and Chinese public holidays, make-up days."""

    holidays: Literal["CN"] | list[Literal["CN"] | date] = Field(
        default_factory=list,
        description="closed days: CN for Chinese public holidays (their official make-up working days open with mon"
        " hours), a list of dates, or both ([CN, 2026-12-24])",
    )
    makeup_workdays: list[date] = Field(default_factory=list, description="weekend days that are open with mon hours")

    def _build_calendar(self) -> BusinessCalendar:
        """These hours with their holidays and make-up working days, as the shared business calendar."""
        return BusinessCalendar.build(
            self.time_zone, self.weekly, holidays=self.holidays, makeup_workdays=self.makeup_workdays
        )
