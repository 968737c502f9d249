"""SLA clocks: due times of warn and breach, paused outside business hours, DST-safe."""

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.escalation.domain.policy import BusinessHours, SlaClockConfig, SlaTrigger
from services.escalation.domain.sla import SlaFacts, SlaKind, add_open_time, open_seconds_between, sla_clocks

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
WORKDAYS = BusinessHours(
    time_zone="Asia/Shanghai",
    weekly={d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    holidays=[datetime(2026, 10, 1).date()],
)


def _trigger(hours: BusinessHours | None = None) -> SlaTrigger:
    return SlaTrigger(
        hours=hours,
        clocks=[
            SlaClockConfig(tier="vip", first_response_seconds=100, resolution_seconds=1000),
            SlaClockConfig(first_response_seconds=600, next_response_seconds=1200, resolution_seconds=3600),
        ],
    )


def test_first_response_and_resolution_without_hours() -> None:
    queued = datetime(2026, 11, 23, 10, 0, tzinfo=SH)
    clocks = sla_clocks(SlaFacts(queue="presales", tier="standard", queued_at=queued), _trigger())
    assert [(c.kind, c.warn_at, c.breach_at) for c in clocks] == [
        (SlaKind.FIRST_RESPONSE, datetime(2026, 11, 23, 10, 8, tzinfo=SH), datetime(2026, 11, 23, 10, 10, tzinfo=SH)),
        (SlaKind.RESOLUTION, datetime(2026, 11, 23, 10, 48, tzinfo=SH), datetime(2026, 11, 23, 11, 0, tzinfo=SH)),
    ]


def test_first_match_by_tier_and_stopped_clocks() -> None:
    queued = datetime(2026, 11, 23, 10, 0, tzinfo=SH)
    vip = sla_clocks(SlaFacts(queue="presales", tier="vip", queued_at=queued), _trigger())
    assert vip[0].breach_at == datetime(2026, 11, 23, 10, 1, 40, tzinfo=SH)
    answered = SlaFacts(queue="presales", tier="standard", queued_at=queued, first_answered_at=queued)
    assert [c.kind for c in sla_clocks(answered, _trigger())] == [SlaKind.RESOLUTION]
    assert sla_clocks(SlaFacts(queue="q", tier="standard", queued_at=queued, resolved=True), _trigger()) == []


def test_next_response_runs_from_the_unanswered_customer_message() -> None:
    queued = datetime(2026, 11, 23, 10, 0, tzinfo=SH)
    facts = SlaFacts(
        queue="presales",
        tier="standard",
        queued_at=queued,
        first_answered_at=datetime(2026, 11, 23, 10, 1, tzinfo=SH),
        last_agent_message_at=datetime(2026, 11, 23, 10, 2, tzinfo=SH),
        last_customer_message_at=datetime(2026, 11, 23, 10, 5, tzinfo=SH),
    )
    nxt = [c for c in sla_clocks(facts, _trigger()) if c.kind == SlaKind.NEXT_RESPONSE]
    assert nxt[0].breach_at == datetime(2026, 11, 23, 10, 25, tzinfo=SH)
    replied = replace(facts, last_agent_message_at=datetime(2026, 11, 23, 10, 6, tzinfo=SH))
    assert SlaKind.NEXT_RESPONSE not in [c.kind for c in sla_clocks(replied, _trigger())]


def test_clock_pauses_over_the_night_weekend_and_holiday() -> None:
    friday_evening = datetime(2026, 11, 27, 17, 55, tzinfo=SH)
    assert add_open_time(friday_evening, 600, WORKDAYS) == datetime(2026, 11, 30, 9, 5, tzinfo=SH)
    before_holiday = datetime(2026, 9, 30, 17, 0, tzinfo=SH)  # Thursday 1 October is closed
    assert add_open_time(before_holiday, 7200, WORKDAYS) == datetime(2026, 10, 2, 10, 0, tzinfo=SH)
    sunday = datetime(2026, 11, 29, 12, 0, tzinfo=SH)
    assert add_open_time(sunday, 60, WORKDAYS) == datetime(2026, 11, 30, 9, 1, tzinfo=SH)
    assert open_seconds_between(friday_evening, datetime(2026, 11, 30, 9, 5, tzinfo=SH), WORKDAYS) == 600


def test_dst_day_counts_real_time() -> None:
    hours = BusinessHours(time_zone="Europe/Berlin", weekly={"sun": ["00:00-24:00"]})
    start = datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN)  # clocks jump 02:00 -> 03:00: the day has 23 hours
    assert open_seconds_between(start, datetime(2026, 3, 30, 0, 0, tzinfo=BERLIN), hours) == 23 * 3600
    due = add_open_time(start, 3 * 3600, hours)
    assert due == datetime(2026, 3, 29, 4, 0, tzinfo=BERLIN)
    assert due.astimezone(UTC) == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    autumn = BusinessHours(time_zone="Europe/Berlin", weekly={"sun": ["00:00-24:00"]})
    day = datetime(2026, 10, 25, 0, 0, tzinfo=BERLIN)  # 25 hours
    assert open_seconds_between(day, datetime(2026, 10, 26, 0, 0, tzinfo=BERLIN), autumn) == 25 * 3600
