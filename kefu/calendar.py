"""Business hours: one home for "is it open now, when does it open, how much open time lies between".

The router (queue hours, agent shifts) and the escalation service (SLA clocks that pause outside hours) both ask
these questions; answering them in one place keeps a holiday closed for both.

A ``BusinessCalendar`` is a weekly schedule in an IANA time zone, plus days that override it: explicit closed dates,
explicit make-up working days, and optionally the Chinese public holidays (``CN``) from the ``chinese-calendar``
package, whose official make-up working days (调休, often a Saturday or Sunday) open too. A make-up working day opens
with Monday's hours, since it stands in for a normal working day.

Each day's ranges are turned into instants in the zone and compared as instants, so a DST change shortens or
lengthens that day by exactly what the wall clock says. A wall time inside a spring-forward gap resolves with
PEP 495 ``fold=0`` (02:30 in Berlin on the spring day is 03:30 CEST, so 02:30-03:00 is empty that day); on the
autumn day the repeated hour counts twice (00:00-24:00 is 25 hours) and 02:30 is its first occurrence.
"""

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import chinese_calendar  # type: ignore[import-untyped]  # ships no type hints

log = logging.getLogger(__name__)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 3 * 366  # how far ahead the calendar looks for an opening before it gives up
Span = tuple[int, int]  # minutes after local midnight: [start, end), end up to 24 * 60
_RANGE = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")
_warned_years: set[int] = set()


def parse_range(text: str) -> Span:
    """``"HH:MM-HH:MM"`` as minutes after local midnight, [start, end); 24:00 may end a range.

    The one reading of a time range: the configuration schema (``kefu.schedule``) validates with it, so a text it
    accepted is read the same way here. ``ValueError`` says what is wrong, in words fit for the configuration's user.
    """
    parsed = _RANGE.match(text)
    if parsed is None:
        raise ValueError(f"{text!r} is not a time range HH:MM-HH:MM")
    start = _minutes(parsed[1], parsed[2], end=False)
    end = _minutes(parsed[3], parsed[4], end=True)
    if start is None or end is None:
        raise ValueError(f"{text!r} is not a valid time (00:00-24:00)")
    if start >= end:
        raise ValueError(f"{text!r}: the start must be before the end (split a range across midnight over two days)")
    return start, end


def _minutes(hours: str, minutes: str, *, end: bool) -> int | None:
    """Minutes after midnight, or None for a time that does not exist (24:00 exists only as an end)."""
    h, m = int(hours), int(minutes)
    if (h == 24 and m == 0 and end) or (h < 24 and m < 60):
        return h * 60 + m
    return None


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """When something is open; every instant passed in must be timezone-aware, answers are in the same zone."""

    time_zone: str
    weekly: tuple[tuple[Span, ...], ...]  # index 0 is Monday
    closed: frozenset[date] = frozenset()
    makeup_workdays: frozenset[date] = frozenset()
    cn_holidays: bool = False

    @classmethod
    def build(
        cls,
        time_zone: str,
        weekly: Mapping[Weekday, Sequence[str]],
        *,
        holidays: Literal["CN"] | Iterable[date | Literal["CN"]] = (),
        makeup_workdays: Iterable[date] = (),
    ) -> "BusinessCalendar":
        """A calendar from configuration: day names (mon…sun) -> ``"HH:MM-HH:MM"`` ranges, closed dates or ``CN``."""
        ZoneInfo(time_zone)  # fail here, not on first use
        items = ["CN"] if holidays == "CN" else list(holidays)
        return cls(
            time_zone=time_zone,
            weekly=tuple(tuple(sorted(parse_range(r) for r in weekly.get(day, ()))) for day in WEEKDAYS),
            closed=frozenset(d for d in items if isinstance(d, date)),
            makeup_workdays=frozenset(makeup_workdays),
            cn_holidays="CN" in items,
        )

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` falls inside an open range."""
        for opens, closes in self._intervals(_aware(at)):
            if opens > at:
                return False
            if at < closes:
                return True
        return False

    def next_open(self, at: datetime) -> datetime | None:
        """``at`` itself if open, else the next opening; None if nothing opens within ``MAX_DAYS``."""
        for opens, closes in self._intervals(_aware(at)):
            if at < closes:
                return max(opens, at).astimezone(at.tzinfo)
        return None

    def next_close(self, at: datetime) -> datetime | None:
        """When the open period containing ``at`` (or the next one, if closed now) ends; None if it does not
        end within ``MAX_DAYS`` (open around the clock)."""
        current: datetime | None = None
        for opens, closes in self._intervals(_aware(at)):
            if closes <= at:
                continue
            if current is not None and opens > current:
                break  # a gap: the period that began before it is over
            current = closes
        return current.astimezone(at.tzinfo) if current is not None and current != self._horizon(at) else None

    def open_seconds(self, start: datetime, end: datetime) -> float:
        """Open time between ``start`` and ``end`` in seconds (0 when ``end`` is not after ``start``)."""
        _aware(end)
        total = 0.0
        if end <= start:
            return total
        for opens, closes in self._intervals(_aware(start)):
            if opens >= end:
                break
            total += max(0.0, (min(closes, end) - max(opens, start)).total_seconds())
        return total

    def after_open_seconds(self, start: datetime, seconds: float) -> datetime | None:
        """The instant at which ``seconds`` of open time have passed since ``start``; None beyond ``MAX_DAYS``."""
        left = timedelta(seconds=seconds)
        for opens, closes in self._intervals(_aware(start)):
            begin = max(opens, start)
            if begin >= closes:
                continue
            if begin + left <= closes:
                return (begin + left).astimezone(start.tzinfo)
            left -= closes - begin
        return None

    def spans_on(self, day: date) -> tuple[Span, ...]:
        """The local ranges open on ``day``, holidays and make-up working days applied."""
        if day in self.closed:
            return ()
        if day in self.makeup_workdays:
            return self.weekly[0]
        if self.cn_holidays:
            try:
                if chinese_calendar.is_workday(day) and day.weekday() >= 5:
                    return self.weekly[0]  # an official make-up working day (调休)
                if chinese_calendar.get_holiday_detail(day)[1] is not None:
                    return ()  # a public holiday, whatever weekday it falls on
            except NotImplementedError:
                _warn_no_data(day.year)
        return self.weekly[day.weekday()]

    def _intervals(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals as UTC instants, in order, from the local day containing ``start``, for ``MAX_DAYS``."""
        day = start.astimezone(ZoneInfo(self.time_zone)).date()
        for _ in range(MAX_DAYS):
            yield from _day_intervals(self, day)
            day += timedelta(days=1)

    def _horizon(self, start: datetime) -> datetime:
        """Where ``_intervals`` stops looking: an interval closing exactly here may go on beyond."""
        zone = ZoneInfo(self.time_zone)
        return _instant(start.astimezone(zone).date() + timedelta(days=MAX_DAYS), 0, zone)


@lru_cache(maxsize=16384)
def _day_intervals(calendar: BusinessCalendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    zone = ZoneInfo(calendar.time_zone)
    spans = ((_instant(day, first, zone), _instant(day, last, zone)) for first, last in calendar.spans_on(day))
    return tuple((opens, closes) for opens, closes in spans if opens < closes)  # 02:30-03:00 over a DST gap is empty


def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    if minutes >= 24 * 60:
        day, minutes = day + timedelta(days=1), minutes - 24 * 60
    # fold=0: a wall time in a spring-forward gap lands one hour later, as PEP 495 says
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone).astimezone(UTC)


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no time zone: business hours compare instants")
    return at


def _warn_no_data(year: int) -> None:
    if year not in _warned_years:
        _warned_years.add(year)
        log.warning("chinese-calendar has no holidays for %d: using the plain weekly schedule for that year", year)
