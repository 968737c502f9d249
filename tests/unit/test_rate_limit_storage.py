"""The webhook limiter's window store: the moving window of the ``limits`` strategy, kept in the event loop.

``limits``' own asynchronous memory storage hands every hit's expiry to a worker thread (``asyncio.to_thread``):
about 450 µs of CPU a webhook, 35-45 % of the channels service's CPU in the end-to-end bench (issue 12). These
tests hold the store to the strategy's semantics and to doing its work in the loop.
"""

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

import pytest
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter

from services.channels.common import rate_limit


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> "concurrent.futures.Future[Any]":
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(rate_limit, "time", fake)
    monkeypatch.setattr("limits.aio.strategies.time", fake)
    return fake


def limiter() -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(rate_limit.WindowStore())


async def test_a_hit_does_no_work_off_the_event_loop(clock: Clock) -> None:
    executor = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    webhooks = MovingWindowRateLimiter(rate_limit.webhook_store())
    for _ in range(20):
        assert await webhooks.hit(parse("100/second"), "webchat/shop")
        clock.now += 0.02
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert executor.submitted == 0


async def test_the_window_moves_and_counts_a_hit_until_its_expiry_instant(clock: Clock) -> None:
    item, webhooks = parse("2/2 seconds"), limiter()
    assert await webhooks.hit(item, "k")
    clock.now += 1
    assert await webhooks.hit(item, "k")
    assert not await webhooks.hit(item, "k")
    stats = await webhooks.get_window_stats(item, "k")
    assert (stats.reset_time, stats.remaining) == (1_000_002.0, 0)  # when the oldest counted hit leaves
    clock.now += 1  # the first hit's very instant of expiry: it still counts
    assert not await webhooks.hit(item, "k")
    clock.now += 0.001
    assert await webhooks.hit(item, "k")  # one left the window, one comes in: no burst across an edge
    assert not await webhooks.hit(item, "k")


async def test_keys_are_separate_and_a_refused_hit_is_not_counted(clock: Clock) -> None:
    item, webhooks = parse("1/second"), limiter()
    assert await webhooks.hit(item, "a")
    assert await webhooks.hit(item, "b")
    for _ in range(5):
        assert not await webhooks.hit(item, "a")
    clock.now += 1.001
    assert await webhooks.hit(item, "a")


async def test_a_key_keeps_no_more_than_its_window(clock: Clock) -> None:
    item, store = parse("3/second"), rate_limit.WindowStore()
    webhooks = MovingWindowRateLimiter(store)
    for _ in range(1000):
        await webhooks.hit(item, "k")
        clock.now += 0.01
    assert store.held() <= 3
    clock.now += 10
    await webhooks.hit(parse("3/second"), "other")
    await store.clear(item.key_for("k"))
    assert store.held() == 1


async def test_reset_and_check(clock: Clock) -> None:
    store = rate_limit.WindowStore()
    webhooks = MovingWindowRateLimiter(store)
    await webhooks.hit(parse("1/second"), "k")
    assert await store.check()
    assert await store.reset() == 1
    assert await webhooks.hit(parse("1/second"), "k")


async def test_the_fixed_window_counters_of_the_interface(clock: Clock) -> None:
    store = rate_limit.WindowStore()
    assert (await store.incr("k", 10), await store.incr("k", 10)) == (1, 2)
    assert (await store.get("k"), await store.get_expiry("k")) == (2, 1_000_010.0)
    clock.now += 10
    assert (await store.get("k"), await store.incr("k", 10)) == (0, 1)
