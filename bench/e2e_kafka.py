"""What ``bench.e2e`` reads from the broker: offer times, consumer backlogs and the escalation service's lag.

* Offers: the routing events topic is read from its end at start; the first ``offered`` event of each contact
  gives its offer time (``occurred_at``, the router's clock), found by the bench's conversation id inside the
  event's conversation key (a phone call's key is its CallSid).
* Backlogs: end offsets minus the committed offsets of the consumer groups (the router's on contacts and commands,
  the escalation service's on contacts and routing events).
* Escalation lag: for each routing event, its record's timestamp (when the router produced it) to the first
  moment the escalation service's group is seen committed past it. The service commits after applying each
  fetched batch; the groups are read every ``interval`` seconds, which is the resolution.
"""

import asyncio
import bisect
import contextlib
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.topics import CONTACTS, ROUTING_COMMANDS, ROUTING_EVENTS

TOKEN = re.compile(r"e2e\d+x\d+")
CALL_SID = re.compile(r"CA[0-9a-f]{32}")
ROUTER_GROUPS = {"kefu-router": CONTACTS, "kefu-router-commands": ROUTING_COMMANDS}
ESCALATION_GROUPS = {"kefu-escalation-contacts": CONTACTS, "kefu-escalation-routing": ROUTING_EVENTS}
ESCALATION_ROUTING_GROUP = "kefu-escalation-routing"


@dataclass
class Backlog:
    router: int
    escalation: int


@dataclass
class _Partition:
    pending: deque[tuple[int, int]] = field(default_factory=deque)  # (offset, produced ms) not yet committed past
    seen_commits: list[int] = field(default_factory=list)  # committed offsets as sampled, non-decreasing
    seen_at: list[float] = field(default_factory=list)  # when each was sampled (epoch seconds)


class Watcher:
    """Reads the routing events and samples the consumer groups until ``stop``."""

    def __init__(self, bootstrap: str, *, interval: float = 0.2) -> None:
        self.bootstrap, self.interval = bootstrap, interval
        self.offers: dict[str, float] = {}  # conversation id or CallSid -> offer time (epoch seconds)
        self.escalation_lags: list[tuple[float, float]] = []  # (applied at, lag seconds)
        self.backlog = Backlog(0, 0)
        self.sampled_at = 0.0
        self._consumer: AIOKafkaConsumer | None = None
        self._groups: dict[str, AIOKafkaConsumer] = {}
        self._topics: dict[str, list[TopicPartition]] = {}
        self._partitions: dict[int, _Partition] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False, client_id="kefu-bench-e2e"
        )
        await self._consumer.start()
        # a consumer per group, never subscribed (so it never joins the group), reads the group's committed offsets;
        # Tansu does not answer the admin client's OffsetFetch
        for group in {**ROUTER_GROUPS, **ESCALATION_GROUPS}:
            reader = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False, client_id="kefu-bench-e2e"
            )
            await reader.start()
            self._groups[group] = reader
        partitions = await self._partitions_of(ROUTING_EVENTS)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        self._partitions = {tp.partition: _Partition() for tp in partitions}
        await self.sample()
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._sample_forever())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in [self._consumer, *self._groups.values()]:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._consumer, self._groups = None, {}

    async def _partitions_of(self, topic: str) -> list[TopicPartition]:
        if topic not in self._topics:
            assert self._consumer is not None
            for _ in range(50):
                cluster = await self._consumer._client.fetch_all_metadata()
                found = cluster.partitions_for_topic(topic)
                if found:
                    self._topics[topic] = [TopicPartition(topic, p) for p in sorted(found)]
                    break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"topic {topic} has no partitions")
        return self._topics[topic]

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batches.items():
                partition = self._partitions[tp.partition]
                for record in records:
                    self._track(partition, record.offset, record.timestamp)
                    value = record.value or b""
                    if b"offered" in value:
                        self._offered(value)

    def _offered(self, value: bytes) -> None:
        event = json.loads(value)
        if event.get("type") != "offered":
            return
        key = str(event.get("conversation_key", ""))
        match = TOKEN.search(key) or CALL_SID.search(key)
        if match and match.group(0) not in self.offers:
            self.offers[match.group(0)] = datetime.fromisoformat(event["occurred_at"]).timestamp()

    def _track(self, partition: _Partition, offset: int, produced_ms: int) -> None:
        commits = partition.seen_commits
        if commits and commits[-1] > offset:  # the service was faster than this reader: when was it first seen?
            at = partition.seen_at[bisect.bisect_right(commits, offset)]
            self.escalation_lags.append((at, at - produced_ms / 1000))
        else:
            partition.pending.append((offset, produced_ms))

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(Exception):
                await self.sample()

    async def _committed(self, group: str, topic: str) -> dict[TopicPartition, int]:
        partitions = await self._partitions_of(topic)
        # one OffsetFetch for all partitions (AIOKafkaConsumer.committed asks for one partition at a time)
        offsets = await self._groups[group]._coordinator.fetch_committed_offsets(partitions)
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def sample(self) -> Backlog:
        """Read the groups' committed offsets and the topics' end offsets now."""
        assert self._consumer is not None
        groups = {**ROUTER_GROUPS, **ESCALATION_GROUPS}
        committed = {group: await self._committed(group, topic) for group, topic in groups.items()}
        topics = sorted(set(groups.values()))
        partitions = [tp for topic in topics for tp in await self._partitions_of(topic)]
        ends = await self._consumer.end_offsets(partitions)
        now = time.time()

        def lag(group: str) -> int:
            mine = committed[group]
            return sum(max(0, end - mine.get(tp, 0)) for tp, end in ends.items() if tp.topic == groups[group])

        self.backlog = Backlog(
            router=sum(lag(g) for g in ROUTER_GROUPS), escalation=sum(lag(g) for g in ESCALATION_GROUPS)
        )
        self.sampled_at = now
        for tp, offset in committed[ESCALATION_ROUTING_GROUP].items():
            partition = self._partitions.get(tp.partition)
            if partition is None:
                continue
            if not partition.seen_commits or offset > partition.seen_commits[-1]:
                partition.seen_commits.append(offset)
                partition.seen_at.append(now)
            while partition.pending and partition.pending[0][0] < offset:
                _, produced_ms = partition.pending.popleft()
                self.escalation_lags.append((now, now - produced_ms / 1000))
        return self.backlog
