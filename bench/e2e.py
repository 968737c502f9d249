"""``make bench-e2e``: the whole system under a mixed-channel webhook load, as separate processes, end to end.

``kefu dev`` runs channels, router and escalation on the embedded PostgreSQL and Tansu broker with a generated
configuration of ``--agents`` agents (``bench.e2e_stack``). Simulated agents (``bench.e2e_agents``, a process of
their own) hold the router's desktop event streams, accept every offer and complete it after
``--handle-seconds``. A load generator (``bench.e2e_load``, a process of its own, open loop) posts signed webhooks,
mostly web chat, at each rate of ``--rates`` for ``--duration`` seconds. After each step the bench waits until the
backlogs are drained, so that steps do not overlap.

One markdown row per step on stdout (progress on stderr):

* offered and achieved webhooks/s (2xx answers over the step), non-2xx answers (status 0: no answer);
* ack p50/p99: webhook due (open loop) -> answer, ms;
* webhook→offer p50/p99/max: webhook due -> the contact's first ``offered`` routing event (its ``occurred_at``),
  s, over the contacts offered by the end of the drain; ``contacts offered / acked`` counts them against the
  acknowledged webhooks (those not offered are not in the percentiles);
* router / escalation backlog when the load stops: their consumer groups' lag (end minus committed offsets);
* esc lag p99: routing event produced -> escalation's group committed past it (sampled every 0.2 s), s;
* drain: load stopped -> both backlogs zero, s;
* CPU % of one core / RSS MiB of each process over the step (PostgreSQL: postmaster and backends, PSS), the
  machine's CPU (% of all cores), and which process saturates first (at or above 90 % of a core; ``machine``
  when no single one does but all cores are busy).

``--compare`` also drives, at the same rates, a bare FastAPI endpoint (``bench.bare``) and a signed-publish
endpoint (``bench.bare``'s ``/signed/`` route, to a topic of its own: Standard Webhooks check and an ``acks=all``
send) with web chat webhooks: the ceiling. ``--burst`` ends with ``--burst-seconds`` at twice the last rate and
reports the drain time.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil

from bench.e2e_kafka import Backlog, Watcher
from bench.e2e_load import DEFAULT_MIX, parse_mix, token
from bench.e2e_stack import Stack, Usage, free_port, write_config

PROCESSES = ("channels", "router", "escalation", "postgres", "broker", "load", "agents")
SATURATED = 90.0
CEILING_TOPIC = "kefu.bench.ceiling.v1"  # the signed ceiling publishes here, not on the contacts topic the router reads
_children: list[int] = []  # pids of the processes this bench started itself (kefu dev stops its own)


def say(message: str) -> None:
    print(f"bench-e2e {time.strftime('%H:%M:%S')}: {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass
class Load:
    start: float
    rate: float
    count: int
    finish_seconds: float
    latency_ms: list[float]
    status: list[int]
    late_ms: float
    calls: dict[str, int]

    @property
    def ok(self) -> list[int]:
        return [i for i, s in enumerate(self.status) if 200 <= s < 300]


@dataclass
class Row:
    label: str
    offered_rate: float
    load: Load
    usage: Usage
    backlog: Backlog | None = None
    offer_s: list[float] = field(default_factory=list)
    offered: int = 0
    escalation_lags: list[float] = field(default_factory=list)
    drain_s: float = math.nan


class Bench:
    def __init__(self, options: argparse.Namespace, stack: Stack, config_path: Path, tokens_path: Path) -> None:
        self.options, self.stack, self.config_path, self.tokens_path = options, stack, config_path, tokens_path
        self.watcher = Watcher(stack.bootstrap)  # made again in run(), once the broker's port is known
        self.agents: asyncio.subprocess.Process | None = None
        self.processes: dict[str, list[psutil.Process]] = {}
        self.ceilings: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self.step = 0
        self.rows: list[Row] = []
        self.ceilings_rows: list[Row] = []

    async def start_agents(self) -> None:
        self.agents = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.e2e_agents",
            "--port",
            str(self.stack.ports["router"]),
            "--agents",
            str(self.tokens_path),
            "--handle-seconds",
            str(self.options.handle_seconds),
            stdout=asyncio.subprocess.PIPE,
        )
        _children.append(self.agents.pid)
        assert self.agents.stdout is not None
        line = await asyncio.wait_for(self.agents.stdout.readline(), 120)
        if line.strip() != b"ready":
            raise RuntimeError("the simulated agents did not connect")

    async def stop_agents(self) -> dict[str, int]:
        if self.agents is None or self.agents.returncode is not None:
            return {}
        self.agents.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(self.agents.communicate(), 30)
        with contextlib.suppress(ValueError):
            counts: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])
            return counts
        return {}

    def start_ceilings(self) -> None:
        env = {**os.environ, "KEFU_KAFKA_BOOTSTRAP": self.stack.bootstrap, "KEFU_BENCH_TOPIC": CEILING_TOPIC}
        for name, app in (("bare", "bench.bare:app"), ("signed", "bench.bare:app")):
            port = free_port()
            process = subprocess.Popen(  # noqa: S603 - our interpreter, our app
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--port",
                    str(port),
                    app,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _children.append(process.pid)
            self.ceilings[name] = (process, port)
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=1.0) as client:
            for name, (_, port) in self.ceilings.items():
                while True:
                    try:
                        client.get(f"http://127.0.0.1:{port}/docs")
                        break
                    except httpx.HTTPError:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"the {name} ceiling did not start") from None
                        time.sleep(0.2)

    def stop_ceilings(self) -> None:
        for process, _ in self.ceilings.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)

    async def run_load(self, rate: float, duration: float, *, target: str, port: int) -> tuple[Load, Usage]:
        self.step += 1
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.e2e_load",
            "--port",
            str(port),
            "--config",
            str(self.config_path),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--step",
            str(self.step),
            "--mix",
            ",".join(f"{k}={v}" for k, v in self.options.mix.items()),
            "--target",
            target,
            "--connections",
            str(self.options.connections),
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )
        _children.append(process.pid)
        assert process.stdout is not None
        ready = (await process.stdout.readline()).decode().split()
        if not ready or ready[0] != "ready":
            await process.wait()
            raise RuntimeError("the load generator did not start")
        groups = dict(self.processes)
        groups["load"] = [psutil.Process(process.pid)]
        if target != "service":
            groups = {target: [psutil.Process(self.ceilings[target][0].pid)], "load": groups["load"]}
        usage = Usage(groups)
        await asyncio.sleep(max(0.0, float(ready[1]) - time.time()))
        usage.start()
        line = await process.stdout.readline()
        usage.stop()
        await process.wait()
        if not line.strip():
            raise RuntimeError(f"the load generator exited with {process.returncode} and no results")
        data: dict[str, Any] = json.loads(line)
        load = Load(
            start=data["start"],
            rate=data["rate"],
            count=data["count"],
            finish_seconds=data["finish_seconds"],
            latency_ms=data["latency_ms"],
            status=data["status"],
            late_ms=data["late_ms"],
            calls=data["calls"],
        )
        if load.late_ms > 50:
            say(f"the load generator fell behind its schedule (p99 {load.late_ms:.0f} ms late): the rate is its own")
        return load, usage

    async def service_step(self, label: str, rate: float, duration: float) -> Row:
        say(f"{label}: {rate:g} webhooks/s for {duration:g}s")
        began = time.time()
        load, usage = await self.run_load(rate, duration, target="service", port=self.stack.ports["channels"])
        backlog = await self.watcher.sample()
        stopped = time.monotonic()
        say(f"{label}: load done; backlog router {backlog.router}, escalation {backlog.escalation}; draining")
        drain_s = await self.drain(stopped)
        keys = {seq: token(self.step, seq) for seq in range(load.count)}
        keys.update({seq: sid for sid, seq in load.calls.items()})
        ok = load.ok
        deadline = time.monotonic() + self.options.offer_wait
        while time.monotonic() < deadline and any(keys[seq] not in self.watcher.offers for seq in ok):
            await asyncio.sleep(0.2)
        offer_s = [
            self.watcher.offers[keys[seq]] - (load.start + seq / load.rate)
            for seq in ok
            if keys[seq] in self.watcher.offers
        ]
        lags = [lag for at, lag in self.watcher.escalation_lags if at >= began]
        row = Row(label, rate, load, usage, backlog, offer_s, len(offer_s), lags, drain_s)
        say(f"{label}: {len(ok)}/{load.count} acknowledged, {len(offer_s)} offered, drained in {drain_s:.1f}s")
        return row

    async def drain(self, since: float) -> float:
        """Seconds from ``since`` until both backlogs are zero (NaN after ``--drain-timeout``)."""
        deadline = since + self.options.drain_timeout
        while time.monotonic() < deadline:
            backlog = await self.watcher.sample()
            if backlog.router == 0 and backlog.escalation == 0:
                return time.monotonic() - since
            await asyncio.sleep(0.2)
        return math.nan

    async def ceiling_step(self, target: str, rate: float, duration: float) -> Row:
        say(f"ceiling {target}: {rate:g} webhooks/s for {duration:g}s")
        load, usage = await self.run_load(rate, duration, target=target, port=self.ceilings[target][1])
        return Row(target, rate, load, usage)

    async def run(self) -> None:
        """The steps; their rows are in ``rows`` and ``ceilings`` as they end (an interrupted run keeps those)."""
        options = self.options
        rows, ceilings = self.rows, self.ceilings_rows
        self.watcher = Watcher(self.stack.bootstrap)
        try:
            await self.watcher.start()
            self.processes = self.stack.processes()
            missing = [name for name in PROCESSES[:5] if name not in self.processes]
            if missing:
                say(f"not found, not measured: {', '.join(missing)}")
            say(f"starting {options.agents} agents")
            await self.start_agents()
            assert self.agents is not None
            self.processes["agents"] = [psutil.Process(self.agents.pid)]
            if options.compare:
                self.start_ceilings()
            warm = await self.service_step("warm-up", options.warmup_rate, options.warmup_seconds)
            if not warm.load.ok or warm.offered == 0:
                raise RuntimeError(f"warm-up: {len(warm.load.ok)} acknowledged, {warm.offered} offered: see the log")
            for rate in options.rates:
                rows.append(await self.service_step(f"{rate:g}/s", rate, options.duration))
                if options.compare:
                    for target in ("bare", "signed"):
                        ceilings.append(await self.ceiling_step(target, rate, options.duration))
            if options.burst and options.rates:
                rate = 2 * options.rates[-1]
                rows.append(await self.service_step(f"burst {rate:g}/s", rate, options.burst_seconds))
        finally:
            counts = await self.stop_agents()
            if counts:
                say(f"agents: {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}")
            self.stop_ceilings()
            await self.watcher.stop()


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _s(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def _achieved(row: Row) -> float:
    return len(row.load.ok) / max(row.load.count / row.load.rate, row.load.finish_seconds)


def _busiest(usage: Usage) -> tuple[str, float]:
    name = max(usage.cpu, key=lambda name: usage.cpu[name], default="")
    return name, usage.cpu.get(name, 0.0)


def _saturates(usage: Usage) -> str:
    busiest, cpu = _busiest(usage)
    if cpu >= SATURATED:
        return f"{busiest} ({cpu:.0f} %)"
    if usage.machine_cpu >= 95:
        return f"machine ({usage.machine_cpu:.0f} % of {psutil.cpu_count()} cores)"
    return "–"


def table(rows: list[Row]) -> str:
    head = [
        "step",
        "offered/s",
        "achieved/s",
        "non-2xx",
        "ack p50 / p99 ms",
        "webhook→offer p50 / p99 / max s",
        "contacts offered / acked",
        "backlog router / esc",
        "esc lag p99 s",
        "drain s",
        *(f"{name} CPU% / MiB" for name in PROCESSES),
        "machine CPU% (all cores)",
        "saturates first",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        latency = row.load.latency_ms
        assert row.backlog is not None
        cells = [
            row.label,
            f"{row.offered_rate:g}",
            f"{_achieved(row):.0f}",
            str(row.load.count - len(row.load.ok)),
            f"{_ms(percentile(latency, 50))} / {_ms(percentile(latency, 99))}",
            f"{_s(percentile(row.offer_s, 50))} / {_s(percentile(row.offer_s, 99))} / "
            f"{_s(max(row.offer_s, default=math.nan))}",
            f"{row.offered}/{len(row.load.ok)}",
            f"{row.backlog.router} / {row.backlog.escalation}",
            _s(percentile(row.escalation_lags, 99)),
            _s(row.drain_s),
            *(
                f"{row.usage.cpu[name]:.0f} / {row.usage.rss_mb[name]:.0f}" if name in row.usage.cpu else "–"
                for name in PROCESSES
            ),
            f"{row.usage.machine_cpu:.0f}",
            _saturates(row.usage),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ceiling_table(rows: list[Row]) -> str:
    head = ["endpoint", "offered/s", "achieved/s", "non-2xx", "ack p50 / p99 ms", "CPU% / MiB", "load CPU%"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    names = {"bare": "bare FastAPI (bench.bare)", "signed": "signed publish, acks=all (bench.bare /signed/)"}
    for row in rows:
        cells = [
            names[row.label],
            f"{row.offered_rate:g}",
            f"{_achieved(row):.0f}",
            str(row.load.count - len(row.load.ok)),
            f"{_ms(percentile(row.load.latency_ms, 50))} / {_ms(percentile(row.load.latency_ms, 99))}",
            f"{row.usage.cpu[row.label]:.0f} / {row.usage.rss_mb[row.label]:.0f}",
            f"{row.usage.cpu['load']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interrupted(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _stop_children() -> None:
    for pid in _children:
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            process = psutil.Process(pid)
            process.terminate()
            with contextlib.suppress(psutil.TimeoutExpired):
                process.wait(5)
                continue
            process.kill()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.e2e", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 50, 100, 250, 500, 1000])
    parser.add_argument("--duration", type=float, default=30, help="seconds per step (default 30)")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=10, help="each agent's slots on every channel (default 10)")
    parser.add_argument("--handle-seconds", type=float, default=1.0, help="accept -> complete (default 1)")
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default=DEFAULT_MIX,
        help="channel weights (default " + ",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()) + ")",
    )
    parser.add_argument("--connections", type=int, default=64, help="load generator connections (default 64)")
    parser.add_argument("--compare", action="store_true", help="also bench.bare and a signed-publish endpoint")
    parser.add_argument("--burst", action="store_true", help="then twice the last rate, and the drain time")
    parser.add_argument("--burst-seconds", type=float, default=30)
    parser.add_argument("--drain-timeout", type=float, default=120, help="most seconds to wait for zero backlogs")
    parser.add_argument("--offer-wait", type=float, default=5, help="seconds more for the last offers after draining")
    parser.add_argument("--warmup-rate", type=float, default=5)
    parser.add_argument("--warmup-seconds", type=float, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, data)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    directory = Path(tempfile.mkdtemp(prefix="kefu-bench-e2e-"))
    config_path, tokens_path = write_config(directory, agents=options.agents, capacity=options.capacity)
    stack = Stack(directory, config_path)
    bench = Bench(options, stack, config_path, tokens_path)
    status = 0
    try:
        say(f"starting kefu dev in {directory} ({options.agents} agents x {options.capacity} slots per channel)")
        stack.start()
        say(f"ready: {', '.join(f'{k} {v}' for k, v in stack.ports.items())}, kafka {stack.bootstrap}")
        import uvloop

        uvloop.run(bench.run())
    except KeyboardInterrupt:
        say("interrupted; stopping")
        status = 130
    except RuntimeError as exc:
        say(f"failed: {exc}")
        status = 1
    finally:
        # a second Ctrl-C must not leave kefu dev (its own session) running
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_children()
        say("stopping kefu dev")
        stack.stop()
        if options.keep:
            say(f"kept {directory}")
        else:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)
    if bench.rows or bench.ceilings_rows:
        report(options, bench.rows, bench.ceilings_rows)
    return status


def report(options: argparse.Namespace, rows: list[Row], ceilings: list[Row]) -> None:
    cores = psutil.cpu_count()
    print(
        f"\nbench-e2e: {options.agents} agents x {options.capacity} slots, handling {options.handle_seconds:g}s, "
        f"{options.duration:g}s per step, mix {','.join(f'{k}={v}' for k, v in options.mix.items())}, "
        f"{cores} cores, kefu dev (embedded PostgreSQL and Tansu), one process per service\n"
        f"command: python -m bench.e2e {' '.join(sys.argv[1:])}\n"
    )
    print(table(rows))
    first = next(((row, _busiest(row.usage)) for row in rows if _busiest(row.usage)[1] >= SATURATED), None)
    if first is not None:
        row, (name, cpu) = first
        print(f"\nsaturates first: {name} ({cpu:.0f} % of a core) at {row.label}")
    elif rows:
        busiest = max(rows, key=lambda row: _busiest(row.usage)[1])
        name, cpu = _busiest(busiest.usage)
        print(f"\nno process reached {SATURATED:.0f} % of a core; the busiest: {name} ({cpu:.0f} %) at {busiest.label}")
    burst = [row for row in rows if row.label.startswith("burst")]
    for row in burst:
        seconds = row.load.count / row.load.rate
        drained = "not within --drain-timeout" if math.isnan(row.drain_s) else f"{row.drain_s:.1f}s after it ended"
        print(f"\nburst: {row.offered_rate:g} webhooks/s for {seconds:g}s; backlogs zero {drained}")
    if ceilings:
        print("\nceiling, same rates, web chat webhooks:\n")
        print(ceiling_table(ceilings))


if __name__ == "__main__":
    sys.exit(main())
