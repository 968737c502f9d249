"""SLA clocks: when a contact's first response, next response and resolution warn and breach.

Pure: the caller passes the contact's times. With business hours, only open time counts: a clock started on Friday
evening runs on Monday morning. The hours are a ``kefu.calendar.BusinessCalendar``, the router's too, so time zones,
DST and holidays mean the same thing in both services; a clock that cannot finish within ``MAX_DAYS`` of open days
is a configuration mistake and raises.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from kefu.calendar import MAX_DAYS
from services.escalation.domain.policy import BusinessHours, SlaTrigger


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
    due = hours.after_open_seconds(start, seconds)
    if due is None:
        raise ValueError(f"business hours in {hours.time_zone} do not open for {seconds} s within {MAX_DAYS} days")
    return due


def open_seconds_between(start: datetime, end: datetime, hours: BusinessHours | None) -> float:
    """How much open time lies between ``start`` and ``end`` (0 when ``end`` is not after ``start``)."""
    if end <= start:
        return 0.0
    if hours is None:
        return (end - start).total_seconds()
    return hours.calendar().open_seconds(start, end)
