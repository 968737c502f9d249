"""SLA clocks: when a contact's first response, next response and resolution warn and breach.

Pure: the caller passes the contact's times. With business hours, only open time counts: a clock started on Friday
evening runs on Monday morning. Open intervals are built in the configured IANA zone and compared as instants, so
a DST change shortens or lengthens that day's hours by exactly what the wall clock says; a range starting in the
spring-forward gap opens as if the clock had not jumped yet (02:30 becomes 03:30).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from services.escalation.domain.policy import BusinessHours, SlaTrigger, Weekday

_WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MAX_DAYS = 3 * 366  # a clock that cannot finish within three years of open days is a configuration mistake


class SlaKind(StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


@dataclass(frozen=True, slots=True)
class SlaFacts:
    """What the clocks need to know about a contact; every time is timezone-aware."""

    queue: str
    tier: str
    queued_at: datetime
    first_answered_at: datetime | None = None
    last_customer_message_at: datetime | None = None
    last_agent_message_at: datetime | None = None
    resolved: bool = False


@dataclass(frozen=True, slots=True)
class SlaClock:
    """One running clock: when it started, when it warns and when it breaches."""

    kind: SlaKind
    started_at: datetime
    warn_at: datetime
    breach_at: datetime


def sla_clocks(facts: SlaFacts, trigger: SlaTrigger) -> list[SlaClock]:
    """The clocks running for ``facts`` (a stopped clock is not returned); none when no SLA applies."""
    config = trigger.clock_for(facts.queue, facts.tier)
    if config is None or facts.resolved:
        return []
    hours = config.hours or trigger.hours
    percent = config.warn_at_percent or trigger.warn_at_percent
    running: list[tuple[SlaKind, datetime, float | None]] = [
        (SlaKind.RESOLUTION, facts.queued_at, config.resolution_seconds)
    ]
    if facts.first_answered_at is None:
        running.append((SlaKind.FIRST_RESPONSE, facts.queued_at, config.first_response_seconds))
    elif facts.last_customer_message_at is not None and facts.last_customer_message_at > max(
        facts.first_answered_at, facts.last_agent_message_at or facts.first_answered_at
    ):
        # the customer wrote after the last answer: the next response is owed from that message
        running.append((SlaKind.NEXT_RESPONSE, facts.last_customer_message_at, config.next_response_seconds))
    return [
        SlaClock(
            kind=kind,
            started_at=start,
            warn_at=add_open_time(start, seconds * percent / 100, hours),
            breach_at=add_open_time(start, seconds, hours),
        )
        for kind, start, seconds in sorted(running, key=lambda r: r[0] != SlaKind.FIRST_RESPONSE)
        if seconds is not None
    ]


def add_open_time(start: datetime, seconds: float, hours: BusinessHours | None) -> datetime:
    """The instant at which ``seconds`` of open time have passed since ``start``."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if hours is None:
        return start + timedelta(seconds=seconds)
    left = timedelta(seconds=seconds)
    for opens, closes in _open_intervals(start, hours):
        begin = max(opens, start)
        if begin >= closes:
            continue
        if begin + left <= closes:
            return (begin + left).astimezone(start.tzinfo)
        left -= closes - begin
    raise ValueError(f"business hours in {hours.time_zone} do not open for {seconds} s within {_MAX_DAYS} days")


def open_seconds_between(start: datetime, end: datetime, hours: BusinessHours | None) -> float:
    """How much open time lies between ``start`` and ``end`` (0 when ``end`` is not after ``start``)."""
    if end <= start:
        return 0.0
    if hours is None:
        return (end - start).total_seconds()
    total = 0.0
    for opens, closes in _open_intervals(start, hours):
        if opens >= end:
            break
        total += max(0.0, (min(closes, end) - max(opens, start)).total_seconds())
    return total


def _open_intervals(start: datetime, hours: BusinessHours) -> Iterator[tuple[datetime, datetime]]:
    """Open intervals as UTC instants, in order, from the local day containing ``start``."""
    zone = ZoneInfo(hours.time_zone)
    closed = set(hours.holidays)
    day = start.astimezone(zone).date()
    for _ in range(_MAX_DAYS):
        if day not in closed:
            for text in hours.weekly.get(_WEEKDAYS[day.weekday()], []):
                first, last = text.split("-")
                yield _instant(day, first, zone), _instant(day, last, zone)
        day += timedelta(days=1)


def _instant(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    h, m = int(hhmm[:2]), int(hhmm[3:])
    if h == 24:
        day, h = day + timedelta(days=1), 0
    # fold=0: a wall time inside a spring-forward gap (02:30 in Berlin) lands one hour later (03:30), as PEP 495 says
    return datetime.combine(day, time(h, m), tzinfo=zone).astimezone(UTC)
