"""The load generator of ``bench.e2e``, run as a process of its own: signed webhooks at a fixed rate, open loop.

Every request is built and signed before the clock starts (the channel builders of ``kefu demo``), each for a
conversation of its own, so that every webhook opens one contact. Request ``i`` is due at ``start + i / rate`` and
is sent then whether or not earlier ones were answered (at most ``--connections`` are in flight; the others wait
for a connection, and that wait counts); its latency is measured from when it was due, so an overloaded
service's queueing shows in the percentiles instead of slowing the generator down.

Prints ``ready <start, epoch seconds>`` once the requests are built, then one JSON line with the results.
"""

import argparse
import asyncio
import json
import math
import random
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from bench.e2e_http import Pool, build
from kefu.config_file import load_section
from tools import demo, demo_channels

TEXT = "你好，我想咨询一下这款空调的安装服务"
DEFAULT_MIX = {"webchat": 70, "wechat": 10, "douyin": 8, "email": 7, "phone": 5}


def token(step: int, seq: int) -> str:
    """The conversation id of request ``seq`` of ``step``; it shows up inside the contact's conversation key."""
    return f"e2e{step}x{seq}"


def parse_mix(text: str) -> dict[str, int]:
    """``webchat=70,wechat=10,...`` as weights."""
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in DEFAULT_MIX:
            raise argparse.ArgumentTypeError(f"unknown channel {name!r} (one of {', '.join(DEFAULT_MIX)})")
        mix[name.strip()] = int(weight)
    return mix


def _builders() -> dict[str, Callable[..., Any]]:
    return {"webchat": demo.webchat, **demo_channels.BUILDERS}


def _channels_config(path: Path) -> Any:
    # the model the demo builders take, wherever the channels service keeps it
    model = typing.get_type_hints(demo.webchat)["config"]
    return load_section(path, "channels", model)


def build_requests(
    *, config_path: Path, host: str, step: int, count: int, mix: dict[str, int], target: str, seed: int
) -> tuple[list[bytes], dict[str, int]]:
    """``count`` prebuilt requests and the phone calls' CallSid -> sequence number (a call's conversation key is
    its CallSid, not the conversation id)."""
    config = _channels_config(config_path)
    builders = _builders()
    rng = random.Random(seed)  # noqa: S311 - a channel mix, not a secret
    channels = rng.choices(list(mix), weights=list(mix.values()), k=count)
    requests, calls = [], {}
    for seq, channel in enumerate(channels):
        if target != "service":  # the ceilings take web chat: the reference route checks Standard Webhooks
            channel = "webchat"
        made = builders[channel](config, None, TEXT, token(step, seq))
        path = made.path
        if target == "signed":
            path = path.replace("/webhooks/", "/signed/", 1)
        if made.params:
            path += "?" + urlencode(made.params)
        if channel == "phone":
            calls[parse_qs(made.body.decode())["CallSid"][0]] = seq
        requests.append(build("POST", host, path, made.headers, made.body))
    return requests, calls


async def run(options: argparse.Namespace) -> dict[str, Any]:
    count = max(1, round(options.rate * options.duration))
    host = f"127.0.0.1:{options.port}"
    requests, calls = build_requests(
        config_path=options.config,
        host=host,
        step=options.step,
        count=count,
        mix=options.mix,
        target=options.target,
        seed=options.step,
    )
    pool = Pool("127.0.0.1", options.port, options.connections)
    loop = asyncio.get_running_loop()
    latency = [math.nan] * count
    status = [0] * count
    late = [0.0] * count
    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
    start = clock() + 0.3
    wall = time.time() + (start - clock())
    print(f"ready {wall:.6f}", flush=True)

    async def one(seq: int, due: float) -> None:
        try:
            answer = await pool.send(requests[seq], timeout=options.timeout)
            status[seq] = answer.status
        except Exception:  # a failed request is counted as status 0
            status[seq] = 0
        latency[seq] = (clock() - due) * 1000

    tasks: set[asyncio.Task[None]] = set()
    seq = 0
    while seq < count:
        now = clock()
        while seq < count and start + seq / options.rate <= now:
            due = start + seq / options.rate
            late[seq] = (now - due) * 1000
            task = loop.create_task(one(seq, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            seq += 1
        if seq < count:
            await asyncio.sleep(max(0.0, start + seq / options.rate - clock()))
    sent_at = clock()
    if tasks:
        await asyncio.wait(tasks)
    finished = clock()
    pool.close()
    return {
        "start": wall,
        "rate": options.rate,
        "count": count,
        "send_seconds": sent_at - start,
        "finish_seconds": finished - start,
        "latency_ms": latency,
        "status": status,
        "late_ms": sorted(late)[int(0.99 * (count - 1))],
        "calls": calls,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--step", type=int, default=0)
    parser.add_argument("--mix", type=parse_mix, default=DEFAULT_MIX)
    parser.add_argument("--target", choices=("service", "bare", "signed"), default="service")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=30.0)
    options = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(run(options))
    except KeyboardInterrupt:
        return 130
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
