"""Webhook rate limits per channel account, through the ``limits`` library.

Every webhook URL is ``/webhooks/{channel}/{account}[/...]``. A request to a configured account counts against that
account's budget (``KEFU_WEBHOOK_RATE_LIMIT``, e.g. ``1000/second``, or ``100/second;2000/minute``) before anything
else is done with it, its body unread; beyond the budget it gets 429 ``rate_limited`` with ``Retry-After``. Requests
for accounts that are not configured are not counted (the endpoint answers 404), so made-up ids cannot grow the
limiter's memory. The window moves (no burst of twice the budget across a window's edge), and ``Retry-After`` is
when the oldest counted request leaves it. The budget is per process: N replicas take N times as much.

The strategy is ``limits``' moving window; its windows are kept by ``WindowStore``, a storage of the library's
storage interface that does its work in the event loop. ``limits``' own asynchronous memory storage hands the expiry
of every hit to a worker thread (``asyncio.to_thread``): about 450 µs of CPU a webhook, 35-45 % of this service's
CPU at 40 webhooks/s end to end (issue 12).
"""

import math
import time
from collections import deque

from limits import parse_many
from limits.aio.storage import MovingWindowSupport, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from kefu.ops import error_response
from services.channels.common.runtime import Channels

LIMITED = Counter("kefu_channels_rate_limited_total", "Webhooks refused with 429, by channel", ["channel"])


class WebhookRateLimit:
    """ASGI middleware: 429 for a webhook to an account over its budget."""

    def __init__(self, app: ASGIApp, *, rate: str) -> None:
        self.app = app
        self.items = parse_many(rate)
        self.limiter = MovingWindowRateLimiter(webhook_store())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self._account_key(scope) if scope["type"] == "http" else None
        if key is not None:
            for item in self.items:
                if not await self.limiter.hit(item, key):
                    stats = await self.limiter.get_window_stats(item, key)
                    retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                    LIMITED.labels(key.split("/", 1)[0]).inc()
                    response = error_response(
                        429, "rate_limited", f"more than {item} for webhook account {key}; retry after {retry_after} s"
                    )
                    response.headers["Retry-After"] = str(retry_after)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _account_key(self, scope: Scope) -> str | None:
        """``channel/account`` of a webhook to a configured account, else None."""
        parts = scope["path"].split("/", 4)  # "", "webhooks", channel, account, rest
        if len(parts) < 4 or parts[1] != "webhooks":
            return None
        channels: Channels | None = getattr(scope["app"].state, "channels", None)
        if channels is None:  # not started
            return None
        key = f"{parts[2]}/{parts[3]}"
        return key if channels.is_webhook_account(key) else None


class WindowStore(Storage, MovingWindowSupport):
    """Moving windows in memory: for each key, the times of its counted hits, newest first, never more than its
    limit; a hit older than the window leaves when its key is next used (``clear`` and ``reset`` drop keys whole).

    The counters of the storage interface (``incr``, ``get``, ``get_expiry``: the fixed-window strategies) are kept
    too, so the store answers the whole interface; the webhook limiter does not use them.
    """

    STORAGE_SCHEME = ["kefu+window"]  # noqa: RUF012 - the library's registry reads this attribute of the class

    def __init__(self) -> None:
        super().__init__("kefu+window://")
        self.windows: dict[str, deque[float]] = {}
        self.counters: dict[str, tuple[int, float]] = {}  # key: (count, end of its window)

    @property
    def base_exceptions(self) -> type[Exception]:
        return Exception

    def held(self) -> int:
        """How many hit times are kept, all keys together."""
        return sum(len(times) for times in self.windows.values())

    def _current(self, key: str, expiry: int, now: float) -> deque[float]:
        times = self.windows.setdefault(key, deque())
        while times and times[-1] < now - expiry:  # a hit counts until its very instant of expiry
            times.pop()
        return times

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        now = time.time()
        times = self._current(key, expiry, now)
        if len(times) + amount > limit:
            return False
        times.extendleft([now] * amount)
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        times = self._current(key, expiry, now)
        return (times[-1], len(times)) if times else (now, 0)

    def _counter(self, key: str, now: float) -> tuple[int, float]:
        count, end = self.counters.get(key, (0, now))
        return (count, end) if end > now else (0, now)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        count, end = self._counter(key, now)
        self.counters[key] = (count + amount, end if count else now + expiry)
        return count + amount

    async def get(self, key: str) -> int:
        return self._counter(key, time.time())[0]

    async def get_expiry(self, key: str) -> float:
        return self._counter(key, time.time())[1]

    async def check(self) -> bool:
        return True

    async def reset(self) -> int:
        dropped = len(self.windows) + len(self.counters)
        self.windows.clear()
        self.counters.clear()
        return dropped

    async def clear(self, key: str) -> None:
        self.windows.pop(key, None)
        self.counters.pop(key, None)


def webhook_store() -> WindowStore:
    """The store of the webhook limiter's windows."""
    return WindowStore()
