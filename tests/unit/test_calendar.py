"""Business hours: weekly ranges in a zone, DST gaps and overlaps, 24:00 ends, explicit and Chinese holidays."""

import logging
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar  # type: ignore[import-untyped]
import pytest

from kefu import calendar
from kefu.calendar import BusinessCalendar, Weekday

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_6: dict[Weekday, list[str]] = {d: ["09:00-12:00", "13:00-18:00"] for d in calendar.WEEKDAYS[:5]}


def test_weekly_hours_in_shanghai() -> None:
    cal = BusinessCalendar.build("Asia/Shanghai", WEEKDAYS_9_TO_6)
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=SH)
    assert cal.is_open(monday)
    assert not cal.is_open(monday - timedelta(seconds=1))
    assert not cal.is_open(datetime(2026, 11, 23, 12, 30, tzinfo=SH))  # lunch
    assert not cal.is_open(datetime(2026, 11, 28, 10, 0, tzinfo=SH))  # Saturday
    # the same instant seen from UTC is the same answer
    assert cal.is_open(datetime(2026, 11, 23, 1, 30, tzinfo=UTC))
    assert cal.next_open(monday) == monday
    assert cal.next_open(datetime(2026, 11, 23, 12, 30, tzinfo=SH)) == datetime(2026, 11, 23, 13, 0, tzinfo=SH)
    assert cal.next_close(datetime(2026, 11, 23, 10, 0, tzinfo=SH)) == datetime(2026, 11, 23, 12, 0, tzinfo=SH)
    friday_night = datetime(2026, 11, 27, 20, 0, tzinfo=SH)
    assert cal.next_open(friday_night) == datetime(2026, 11, 30, 9, 0, tzinfo=SH)
    assert cal.next_close(friday_night) == datetime(2026, 11, 30, 12, 0, tzinfo=SH)  # of the next open period
    # answers come back in the zone of the question
    asked_in_utc = cal.next_open(friday_night.astimezone(UTC))
    assert asked_in_utc is not None and asked_in_utc.tzinfo is UTC
    assert cal.open_seconds(monday, datetime(2026, 11, 24, 9, 0, tzinfo=SH)) == 8 * 3600
    assert cal.open_seconds(monday, monday) == 0
    assert cal.open_seconds(monday, monday - timedelta(hours=1)) == 0


def test_a_naive_instant_is_refused() -> None:
    cal = BusinessCalendar.build("Asia/Shanghai", WEEKDAYS_9_TO_6)
    with pytest.raises(ValueError, match="no time zone"):
        cal.is_open(datetime(2026, 11, 23, 10, 0))


def test_24_00_ends_join_across_midnight() -> None:
    cal = BusinessCalendar.build("Asia/Shanghai", {"mon": ["20:00-24:00"], "tue": ["00:00-06:00"]})
    assert cal.is_open(datetime(2026, 11, 23, 23, 59, 59, tzinfo=SH))
    assert cal.is_open(datetime(2026, 11, 24, 0, 0, tzinfo=SH))
    assert cal.next_close(datetime(2026, 11, 23, 21, 0, tzinfo=SH)) == datetime(2026, 11, 24, 6, 0, tzinfo=SH)
    assert cal.open_seconds(datetime(2026, 11, 23, tzinfo=SH), datetime(2026, 11, 25, tzinfo=SH)) == 10 * 3600


def test_open_around_the_clock_never_closes() -> None:
    cal = BusinessCalendar.build("Asia/Shanghai", {d: ["00:00-24:00"] for d in calendar.WEEKDAYS})
    now = datetime(2026, 11, 23, 3, 0, tzinfo=SH)
    assert cal.is_open(now)
    assert cal.next_open(now) == now
    assert cal.next_close(now) is None


def test_berlin_spring_forward_gap() -> None:
    cal = BusinessCalendar.build("Europe/Berlin", {"sun": ["00:00-24:00"]})
    start = datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN)  # 02:00 -> 03:00: a 23-hour day
    assert cal.open_seconds(start, datetime(2026, 3, 30, 0, 0, tzinfo=BERLIN)) == 23 * 3600
    due = cal.after_open_seconds(start, 3 * 3600)
    assert due is not None and due.astimezone(UTC) == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    # a range starting in the gap opens as if the clock had not jumped yet (02:30 is 03:30 CEST)
    gap = BusinessCalendar.build("Europe/Berlin", {"sun": ["02:30-05:00"]})
    opens = gap.next_open(start)
    assert opens is not None and opens.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert opens == datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)
    assert gap.open_seconds(start, datetime(2026, 3, 30, tzinfo=BERLIN)) == 1.5 * 3600
    # a range from inside the gap to its end comes out empty that day (03:30 CEST to 03:00 CEST)
    inside = BusinessCalendar.build("Europe/Berlin", {"sun": ["02:30-03:00"]})
    assert inside.open_seconds(start, datetime(2026, 3, 30, tzinfo=BERLIN)) == 0
    assert inside.next_open(start) == datetime(2026, 4, 5, 2, 30, tzinfo=BERLIN)


def test_berlin_fall_back_overlap() -> None:
    cal = BusinessCalendar.build("Europe/Berlin", {"sun": ["00:00-24:00"]})
    day = datetime(2026, 10, 25, 0, 0, tzinfo=BERLIN)  # 03:00 -> 02:00: a 25-hour day
    assert cal.open_seconds(day, datetime(2026, 10, 26, 0, 0, tzinfo=BERLIN)) == 25 * 3600
    second_0230 = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN)  # the repeated hour, in CET
    assert cal.is_open(second_0230)
    early = BusinessCalendar.build("Europe/Berlin", {"sun": ["01:00-02:30"]})
    # 02:30 with fold=0 is the first one (CEST): the second 02:30 is already closed
    assert early.is_open(datetime(2026, 10, 25, 2, 15, fold=0, tzinfo=BERLIN))
    assert not early.is_open(datetime(2026, 10, 25, 2, 15, fold=1, tzinfo=BERLIN))
    assert early.open_seconds(day, datetime(2026, 10, 26, tzinfo=BERLIN)) == 1.5 * 3600


def test_explicit_holidays_and_makeup_workdays() -> None:
    christmas, saturday = date(2026, 12, 25), date(2026, 12, 26)
    cal = BusinessCalendar.build(
        "Asia/Shanghai",
        {"mon": ["08:00-20:00"], "fri": ["09:00-18:00"]},
        holidays=[christmas],
        makeup_workdays=[saturday],
    )
    assert not cal.is_open(datetime(2026, 12, 25, 10, 0, tzinfo=SH))
    assert cal.next_open(datetime(2026, 12, 25, 10, 0, tzinfo=SH)) == datetime(2026, 12, 26, 8, 0, tzinfo=SH)
    assert cal.is_open(datetime(2026, 12, 26, 19, 0, tzinfo=SH))  # Monday's hours on the make-up Saturday


def test_cn_national_day_2026_is_closed_and_next_open_skips_the_whole_week() -> None:
    cal = BusinessCalendar.build("Asia/Shanghai", WEEKDAYS_9_TO_6, holidays="CN")
    for day in range(1, 8):
        assert not cal.is_open(datetime(2026, 10, day, 10, 0, tzinfo=SH)), f"October {day}"
    before = datetime(2026, 9, 30, 18, 0, tzinfo=SH)
    assert cal.next_open(before) == datetime(2026, 10, 8, 9, 0, tzinfo=SH)
    assert cal.open_seconds(before, datetime(2026, 10, 8, 10, 0, tzinfo=SH)) == 3600
    due = cal.after_open_seconds(datetime(2026, 9, 30, 17, 0, tzinfo=SH), 2 * 3600)
    assert due == datetime(2026, 10, 8, 10, 0, tzinfo=SH)


def test_cn_makeup_workdays_of_2026_are_open() -> None:
    cal = BusinessCalendar.build("Asia/Shanghai", WEEKDAYS_9_TO_6, holidays="CN")
    makeup = [
        date(2026, 1, 1) + timedelta(days=n)
        for n in range(365)
        if (date(2026, 1, 1) + timedelta(days=n)).weekday() >= 5
        and chinese_calendar.is_workday(date(2026, 1, 1) + timedelta(days=n))
    ]
    assert date(2026, 10, 10) in makeup  # Saturday after National Day, worked in its place
    for day in makeup:
        assert cal.is_open(datetime.combine(day, datetime.min.time(), tzinfo=SH) + timedelta(hours=10)), day
    plain = BusinessCalendar.build("Asia/Shanghai", WEEKDAYS_9_TO_6)
    assert not plain.is_open(datetime(2026, 10, 10, 10, 0, tzinfo=SH))


def test_cn_and_explicit_dates_together() -> None:
    cal = BusinessCalendar.build("Asia/Shanghai", WEEKDAYS_9_TO_6, holidays=["CN", date(2026, 11, 11)])
    assert not cal.is_open(datetime(2026, 11, 11, 10, 0, tzinfo=SH))
    assert not cal.is_open(datetime(2026, 10, 2, 10, 0, tzinfo=SH))
    assert cal.is_open(datetime(2026, 11, 12, 10, 0, tzinfo=SH))


def test_a_year_without_cn_data_falls_back_to_the_weekly_schedule(caplog: pytest.LogCaptureFixture) -> None:
    cal = BusinessCalendar.build("Asia/Shanghai", WEEKDAYS_9_TO_6, holidays="CN")
    year = max(y for y in range(2026, 2200) if _has_data(y)) + 1
    monday = next(date(year, 1, d) for d in range(1, 8) if date(year, 1, d).weekday() == 0)
    calendar._warned_years.discard(year)
    with caplog.at_level(logging.WARNING, logger="kefu.calendar"):
        for hour in (10, 11, 14):
            assert cal.is_open(datetime.combine(monday, datetime.min.time(), tzinfo=SH) + timedelta(hours=hour))
        assert (
            cal.open_seconds(
                datetime.combine(monday, datetime.min.time(), tzinfo=SH),
                datetime.combine(monday + timedelta(days=7), datetime.min.time(), tzinfo=SH),
            )
            == 5 * 8 * 3600
        )
    warnings = [r for r in caplog.records if str(year) in r.getMessage()]
    assert len(warnings) == 1, "warned once per year"


def _has_data(year: int) -> bool:
    try:
        chinese_calendar.is_holiday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


@pytest.mark.parametrize(
    ("text", "span"), [("09:00-18:00", (540, 1080)), ("00:00-24:00", (0, 1440)), ("23:59-24:00", (1439, 1440))]
)
def test_a_time_range_reads_as_minutes_after_midnight(text: str, span: tuple[int, int]) -> None:
    assert calendar.parse_range(text) == span


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9-18", "is not a time range HH:MM-HH:MM"),
        ("09:00-24:30", "is not a valid time (00:00-24:00)"),
        ("24:00-24:00", "is not a valid time"),  # 24:00 only ends a range
        ("09:60-10:00", "is not a valid time"),
        ("18:00-09:00", "the start must be before the end"),
        ("09:00-09:00", "the start must be before the end"),
    ],
)
def test_a_time_range_that_cannot_be_read_says_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        calendar.parse_range(text)
