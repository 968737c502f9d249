"""Retry delays of outbound notifications: exponential growth, full jitter, a cap; which statuses are final."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.escalation.adapters.notifier import is_permanent, next_delay


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - jitter, not cryptography


class _Ceiling(random.Random):
    """Always draws the top of the range, to observe the ceiling the jitter draws under."""

    def uniform(self, a: float, b: float) -> float:
        return b


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=60.0),
    cap=st.floats(min_value=0.001, max_value=3600.0),
    seed=st.integers(),
)
def test_delay_stays_within_zero_and_the_capped_exponential(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = next_delay(attempt, _rng(seed), base, cap)
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt - 1, 64))


def test_ceiling_doubles_per_attempt_until_the_cap() -> None:
    ceilings = [next_delay(attempt, _Ceiling(), 1.0, 300.0) for attempt in range(1, 12)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0]


def test_huge_attempt_numbers_are_capped_not_overflowing() -> None:
    assert next_delay(10**9, _Ceiling(), 1.0, 300.0) == 300.0


def test_jitter_spreads_delays_over_the_whole_range() -> None:
    rng = _rng(7)
    delays = [next_delay(5, rng, 1.0, 300.0) for _ in range(2000)]
    # full jitter: uniform over [0, 16], so both ends of the range are used and the mean is near the middle
    assert min(delays) < 0.5
    assert max(delays) > 15.5
    assert 7.0 < sum(delays) / len(delays) < 9.0


def test_same_seed_same_delays() -> None:
    first = [next_delay(a, _rng(42), 0.5, 30.0) for a in range(1, 9)]
    second = [next_delay(a, _rng(42), 0.5, 30.0) for a in range(1, 9)]
    assert first == second


def test_attempt_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt counts from 1"):
        next_delay(0, _rng(0), 1.0, 300.0)


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (400, True),
        (401, True),
        (404, True),
        (410, True),
        (422, True),
        (408, False),
        (429, False),
        (500, False),
        (502, False),
        (503, False),
        (302, False),
    ],
)
def test_which_statuses_dead_letter_at_once(status: int, permanent: bool) -> None:
    assert is_permanent(status) is permanent
