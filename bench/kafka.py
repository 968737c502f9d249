"""What the consumers' Kafka settings cost the broker and the clients, and what they give in latency (issue 12).

    python -m bench.kafka [--waits 20 50 100 200 50,50,200,200] [--consumers 4] [--rate 40] [--idle 3] [--load 3]
                          [--rounds 2] [--partitions 6] [--topics 1]

Starts the embedded Tansu broker (``tools.embedded.EmbeddedKafka``, as ``kefu dev`` does, with its 2 s session) and,
for each fetch wait (``KEFU_KAFKA_FETCH_MAX_WAIT_MS``; ``50,200``: the consumers 50 and 200 in turn), ``--consumers``
consumers made by ``kefu.kafka`` (each a group of its own, as the services' four are) running ``consume_batches`` on
``--topics`` topics of ``--partitions`` partitions. Each setting is measured ``--idle`` seconds with nothing
produced, then ``--load`` seconds with ``--rate`` records a second produced (every consumer reads each one; the
topics in turn). Settings alternate round by round; the table has the medians of ``--rounds``.

Per phase: the broker's CPU (its process's, in % of one core), this process's CPU (the consumers' and, under load,
the producer's: aiokafka and the loop), the requests each consumer sent a second by kind (counted in aiokafka's
connection, so heartbeats and metadata requests too), and produce-to-apply latency under load (p50, p99).
The first rows measure the broker with no client at all, then with the consumers' partitions paused (heartbeats only).
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import AIOKafkaConnection
from pydantic import BaseModel

from kefu import kafka
from tools.embedded import EmbeddedKafka, free_port

KINDS = ("Fetch", "OffsetCommit", "Heartbeat", "Metadata", "ListOffsets", "OffsetFetch")
HEADS = ("fetch", "commit", "hbeat", "meta", "listof", "offget")  # the table's column of each kind
SESSION_MS = "2000"  # kefu dev's, with its embedded broker


class Probe(BaseModel):
    sent: float  # time.monotonic() when produced


SENT: Counter[tuple[str, str]] = Counter()  # (client id, request kind) -> requests sent


def count_requests() -> None:
    """Count every request aiokafka sends, by client id and kind (``FetchRequest_v4`` -> ``Fetch``)."""
    send = AIOKafkaConnection.send

    def counted(conn: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
        SENT[conn._client_id, type(request).__name__.split("Request")[0]] += 1
        return send(conn, request, expect_response)

    AIOKafkaConnection.send = counted


@dataclass
class Phase:
    broker: float  # % of a core
    client: float
    requests: dict[str, float]  # per consumer per second
    latencies: list[float] = field(default_factory=list)  # seconds


class Meter:
    """CPU of the broker and of this process, and requests sent by ``clients``, over a window."""

    def __init__(self, broker: psutil.Process, clients: Sequence[str]) -> None:
        self.broker, self.clients = broker, clients

    def _now(self) -> tuple[float, float, float, Counter[tuple[str, str]]]:
        times = self.broker.cpu_times()
        return time.monotonic(), times.user + times.system, time.process_time(), Counter(SENT)

    async def measure(self, seconds: float, during: Callable[[], Any] | None = None) -> Phase:
        wall, broker, client, sent = self._now()
        task = asyncio.create_task(during()) if during else None
        await asyncio.sleep(seconds)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        wall2, broker2, client2, sent2 = self._now()
        elapsed, per = wall2 - wall, max(1, len(self.clients)) * (wall2 - wall)
        kinds = {kind: sum(sent2[c, kind] - sent[c, kind] for c in self.clients) / per for kind in KINDS}
        return Phase(100 * (broker2 - broker) / elapsed, 100 * (client2 - client) / elapsed, kinds)


async def produce(producer: AIOKafkaProducer, topics: Sequence[str], rate: float) -> None:
    """``rate`` records a second, on a schedule, each keyed at random (spread over the partitions), the topics in
    turn."""
    start = time.monotonic()
    for n in range(10**9):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        value = Probe(sent=time.monotonic()).model_dump_json().encode()
        await producer.send(topics[n % len(topics)], value, key=uuid.uuid4().bytes)


def consumer(bootstrap: str, topics: list[str], group: str, wait: int) -> AIOKafkaConsumer:
    """A consumer as ``kefu.kafka`` makes them, of every one of ``topics``, its fetches waiting ``wait`` ms."""
    os.environ[kafka.FETCH_MAX_WAIT_ENV] = str(wait)
    made = kafka.create_consumer(bootstrap, topics[0], group_id=group)
    made.subscribe(topics)
    return made


async def one_setting(
    bootstrap: str, broker: psutil.Process, producer: AIOKafkaProducer, waits: list[int], args: argparse.Namespace
) -> tuple[Phase, Phase]:
    """The idle and loaded phases of ``args.consumers`` consumers, the i-th with a fetch wait of ``waits[i % n]``."""
    topics = [f"bench-kafka-{uuid.uuid4().hex[:8]}" for _ in range(args.topics)]
    await kafka.ensure_topics(bootstrap, topics, partitions=args.partitions)
    groups = [f"{topics[0]}-{i}" for i in range(args.consumers)]
    consumers = [consumer(bootstrap, topics, g, waits[i % len(waits)]) for i, g in enumerate(groups)]
    latencies: list[float] = []

    async def applied(messages: Sequence[Probe]) -> None:
        now = time.monotonic()
        latencies.extend(now - m.sent for m in messages)

    await kafka.start_all(*consumers)
    loops = [asyncio.create_task(kafka.consume_batches(c, producer, Probe, applied)) for c in consumers]
    try:
        meter = Meter(broker, groups)
        await asyncio.sleep(1.0)  # first fetches and offset look-ups
        idle = await meter.measure(args.idle)
        loaded = await meter.measure(args.load, lambda: produce(producer, topics, args.rate))
        await asyncio.sleep(0.3 + max(waits) / 1000)  # the last records' fetches
        loaded.latencies = latencies
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await kafka.stop_all(*consumers)
    return idle, loaded


async def heartbeats_only(bootstrap: str, broker: psutil.Process, args: argparse.Namespace) -> Phase:
    """``args.consumers`` consumers with every partition paused: they send heartbeats only."""
    topic = f"bench-kafka-{uuid.uuid4().hex[:8]}"
    await kafka.ensure_topics(bootstrap, [topic], partitions=args.partitions)
    groups = [f"{topic}-{i}" for i in range(args.consumers)]
    consumers = [consumer(bootstrap, [topic], group, kafka.FETCH_MAX_WAIT_MS) for group in groups]
    await kafka.start_all(*consumers)
    try:
        for paused in consumers:
            paused.pause(*paused.assignment())
        await asyncio.sleep(0.5)  # a fetch already sent ends
        return await Meter(broker, groups).measure(args.idle)
    finally:
        await kafka.stop_all(*consumers)


def _median(phases: list[Phase]) -> Phase:
    latencies = [s for p in phases for s in p.latencies]
    return Phase(
        statistics.median(p.broker for p in phases),
        statistics.median(p.client for p in phases),
        {k: statistics.median(p.requests[k] for p in phases) for k in KINDS},
        latencies,
    )


def _row(name: str, phase: Phase) -> str:
    counts = "  ".join(f"{phase.requests.get(k, 0):6.1f}" for k in KINDS)
    if phase.latencies:
        ms = sorted(1000 * s for s in phase.latencies)
        p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        latency = f"{p50:6.1f} {p99:6.1f} {len(ms):6d}"
    else:
        latency = f"{'':>6} {'':>6} {'':>6}"
    return f"{name:<20} {phase.broker:7.1f} {phase.client:7.1f}  {counts}  {latency}"


async def main(args: argparse.Namespace) -> None:
    os.environ[kafka.SESSION_TIMEOUT_ENV] = SESSION_MS
    count_requests()
    with EmbeddedKafka(free_port()) as embedded:
        broker = psutil.Process(embedded.pid)
        bare = await Meter(broker, []).measure(2.0)
        paused = await heartbeats_only(embedded.bootstrap, broker, args)
        producer = kafka.create_producer(embedded.bootstrap)
        await producer.start()
        results: dict[str, list[tuple[Phase, Phase]]] = {setting: [] for setting in args.waits}
        try:
            for _ in range(args.rounds):
                for setting in args.waits:
                    waits = [int(wait) for wait in setting.split(",")]
                    results[setting].append(await one_setting(embedded.bootstrap, broker, producer, waits, args))
        finally:
            await producer.stop()
    print(
        f"{args.consumers} consumers of {args.topics} topic(s) of {args.partitions} partitions, "
        f"{args.rate:g} records/s under load, "
        f"medians of {args.rounds} round(s); CPU in % of a core, requests per consumer per second"
    )
    head = "  ".join(f"{h:>6}" for h in HEADS)
    print(f"{'setting':<20} {'broker':>7} {'client':>7}  {head}  {'p50ms':>6} {'p99ms':>6} {'n':>6}")
    print(_row("no client", bare))
    print(_row("paused (idle)", paused))
    for setting, phases in results.items():
        print(_row(f"{setting} idle", _median([idle for idle, _ in phases])))
        print(_row(f"{setting} load", _median([loaded for _, loaded in phases])))


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--waits",
        nargs="+",
        default=["20", "50", "100", "200", "50,50,200,200"],
        help="fetch waits in ms to compare; 50,200 gives the consumers 50 and 200 in turn",
    )
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--partitions", type=int, default=kafka.DEFAULT_PARTITIONS, help="of each topic")
    parser.add_argument("--topics", type=int, default=1, help="each consumer subscribes to this many topics")
    parser.add_argument("--idle", type=float, default=3.0)
    parser.add_argument("--load", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
