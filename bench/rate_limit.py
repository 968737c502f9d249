"""CPU per webhook of the channels service's rate limit (issue 12): ``limits``' moving window on its own
asynchronous memory storage (which hands each hit's expiry to a worker thread) and on ``WindowStore`` (the service's,
in the event loop), alternating in one run.

    python -m bench.rate_limit [--rounds 3] [--hits 3000]

Each round hits one key back to back and then at 100 hits/s (10 ms apart, where every hit of the library's storage
starts a thread hop); the table has medians of the CPU (``time.process_time``, all threads) per hit, less the
loop's own cost for the same sleeps.
"""

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from limits import parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from services.channels.common.rate_limit import WindowStore

STORES: dict[str, Callable[[], Storage]] = {"limits MemoryStorage": MemoryStorage, "WindowStore": WindowStore}


async def cpu_per_hit(store: Storage | None, hits: int, gap: float) -> float:
    limiter = MovingWindowRateLimiter(store) if store is not None else None
    item = parse("1000000/second")
    started = time.process_time()
    for _ in range(hits):
        if limiter is not None:
            await limiter.hit(item, "webchat/shop")
        await asyncio.sleep(gap)
    return (time.process_time() - started) / hits


async def run(rounds: int, hits: int) -> None:
    results: dict[tuple[str, float], list[float]] = {}
    for _ in range(rounds):
        for gap, count in ((0.0, hits), (0.01, max(1, hits // 10))):
            loop_only = await cpu_per_hit(None, count, gap)
            for name, store in STORES.items():
                cost = await cpu_per_hit(store(), count, gap) - loop_only
                results.setdefault((name, gap), []).append(cost)
    print(f"{'store':<22} {'back to back µs/hit':>20} {'100 hits/s µs/hit':>18}")
    for name in STORES:
        cells = [statistics.median(results[(name, gap)]) * 1e6 for gap in (0.0, 0.01)]
        print(f"{name:<22} {cells[0]:>20.0f} {cells[1]:>18.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hits", type=int, default=3000)
    options = parser.parse_args()
    asyncio.run(run(options.rounds, options.hits))


if __name__ == "__main__":
    main()
