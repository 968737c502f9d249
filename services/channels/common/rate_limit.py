"""Webhook rate limits per channel account, through the ``limits`` library.

Every webhook URL is ``/webhooks/{channel}/{account}[/...]``. A request to a configured account counts against that
account's budget (``KEFU_WEBHOOK_RATE_LIMIT``, e.g. ``1000/second``, or ``100/second;2000/minute``) before anything
else is done with it, its body unread; beyond the budget it gets 429 ``rate_limited`` with ``Retry-After``. Requests
for accounts that are not configured are not counted (the endpoint answers 404), so made-up ids cannot grow the
limiter's memory. The window moves (no burst of twice the budget across a window's edge), and ``Retry-After`` is
when the oldest counted request leaves it. The budget is per process: N replicas take N times as much.
"""

import math
import time

from limits import parse_many
from limits.aio.storage import MemoryStorage
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
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

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
