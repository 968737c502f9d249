"""How far behind a consumer is: its backlog, the records on its partitions it has not applied yet (issue 12).

Above capacity, work waits in Kafka, as designed: nothing is lost, it is only late. That wait must be visible. A
consumer's backlog on a partition is the broker's high watermark (the offset the next record will get, as the last
fetch reported it) minus the next offset this consumer still has to apply: the one it last committed, or, before its
first commit on the partition, the first one it fetched there (where it started). Records fetched but not yet
applied count as backlog, as they should: they are not done.

Read without a network call, so a Prometheus scrape or a ``GET /v1/queues`` costs nothing (``Backlog.partitions``);
the high watermark is as fresh as the consumer's last fetch (every ``fetch_max_wait_ms`` at most while it runs).
``kefu_consumer_backlog{group, topic}`` sums every live consumer's partitions.
"""

import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from aiokafka import TopicPartition
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class Consumer(Protocol):
    """What a backlog reads of its consumer (an aiokafka consumer)."""

    def assignment(self) -> set[TopicPartition]:
        """The partitions the consumer owns now."""

    def highwater(self, partition: TopicPartition) -> int | None:
        """The partition's high watermark at the last fetch (None before one)."""


class Backlog:
    """The next offset to apply on each partition of one consumer, and from it the records still to apply."""

    def __init__(self, consumer: Consumer, group: str) -> None:
        self.group = group
        self._consumer = consumer
        self._next: dict[TopicPartition, int] = {}  # committed, or the first fetched before any commit

    def fetched(self, records: Mapping[TopicPartition, list[Any]]) -> None:
        """A fetch returned ``records``: where a partition has no commit of ours yet, it starts at the first."""
        for tp, fetched in records.items():
            if fetched and tp not in self._next:
                self._next[tp] = fetched[0].offset

    def committed(self, offsets: Mapping[TopicPartition, Any]) -> None:
        """Offsets were committed (an int, or aiokafka's ``(offset, metadata)``): applied up to there."""
        for tp, offset in offsets.items():
            self._next[tp] = offset if isinstance(offset, int) else offset[0]

    def partitions(self) -> dict[TopicPartition, int]:
        """Records still to apply on each owned partition the consumer has fetched from (0 when caught up)."""
        owned = self._consumer.assignment()
        for gone in self._next.keys() - owned:  # revoked: another member applies them now
            del self._next[gone]
        backlog = {}
        for tp in owned:
            end = self._consumer.highwater(tp)
            if end is not None:
                backlog[tp] = max(0, end - self._next.get(tp, end))
        return backlog

    def total(self) -> int:
        """Records still to apply on all owned partitions."""
        return sum(self.partitions().values())


class _Collector(Collector):
    """``kefu_consumer_backlog``: read from the live consumers when scraped."""

    def __init__(self) -> None:
        self.backlogs: weakref.WeakSet[Backlog] = weakref.WeakSet()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kefu_consumer_backlog",
            "Records on the consumer's partitions not applied yet (high watermark minus next offset to apply)",
            labels=["group", "topic"],
        )
        totals: dict[tuple[str, str], int] = {}
        for backlog in list(self.backlogs):
            for tp, count in backlog.partitions().items():
                key = (backlog.group, tp.topic)
                totals[key] = totals.get(key, 0) + count
        for (group, topic), count in sorted(totals.items()):
            family.add_metric([group, topic], count)
        yield family


COLLECTOR = _Collector()
REGISTRY.register(COLLECTOR)


def track(consumer: Consumer, group: str) -> Backlog:
    """A backlog for ``consumer`` (of ``group``), reported by ``kefu_consumer_backlog`` while the consumer lives."""
    backlog = Backlog(consumer, group)
    COLLECTOR.backlogs.add(backlog)
    return backlog
