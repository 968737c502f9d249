"""``kefu dlq list`` and ``kefu dlq replay``: read what ``kefu.dlq`` dead-lettered, put chosen records back."""

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from contracts.topics import DLQ_SUFFIX, PRIMARY_TOPICS, dlq
from kefu.dlq import AT, ATTEMPTS, CLASS, EVENT_ID, OFFSET, PARTITION, PREFIX, REASON, REPLAYED_FROM, TOPIC, Headers


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic, as ``kefu dlq list`` shows it."""

    record: ConsumerRecord[bytes, bytes]

    @property
    def headers(self) -> dict[str, str]:
        return {k: v.decode("utf-8", "replace") for k, v in self.record.headers}

    @property
    def position(self) -> str:
        """``partition:offset`` on the dead-letter topic: what ``replay --offset`` takes."""
        return f"{self.record.partition}:{self.record.offset}"

    @property
    def origin(self) -> str:
        """The topic the record came from and goes back to."""
        return self.headers.get(TOPIC) or self.record.topic.removesuffix(DLQ_SUFFIX)

    @property
    def event_id(self) -> str | None:
        """The event or command id: from the header, else from the value when it is a JSON object."""
        found = self.headers.get(EVENT_ID)
        if found:
            return found
        try:
            value = json.loads(self.record.value or b"")
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        found = value.get("event_id") or value.get("command_id")
        return str(found) if found else None

    def describe(self) -> dict[str, Any]:
        h = self.headers
        return {
            "dlq_topic": self.record.topic,
            "position": self.position,
            "topic": self.origin,
            "partition": h.get(PARTITION),
            "offset": h.get(OFFSET),
            "event_id": self.event_id,
            "attempts": h.get(ATTEMPTS),
            "at": h.get(AT),
            "class": h.get(CLASS),
            "reason": h.get(REASON),
        }


def dlq_topics(topics: Sequence[str]) -> list[str]:
    """The dead-letter topics of ``topics`` (original or ``.dlq`` names); every primary topic's when empty."""
    return [t if t.endswith(DLQ_SUFFIX) else dlq(t) for t in topics] or [dlq(t) for t in PRIMARY_TOPICS]


async def read(bootstrap: str, topics: Sequence[str], *, timeout: float = 10.0) -> list[DeadLetter]:
    """Every record now on the dead-letter ``topics``, oldest first per partition (no consumer group is used)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        await consumer.start()
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + timeout
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dead-letter topics were not read within {timeout:g} s")
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                letters.extend(DeadLetter(r) for r in batch if r.offset < end[TopicPartition(r.topic, r.partition)])
        return letters
    finally:
        await consumer.stop()


def chosen(letters: Sequence[DeadLetter], *, positions: Sequence[str], event_ids: Sequence[str]) -> list[DeadLetter]:
    """The dead letters at ``positions`` (``partition:offset``) or with one of ``event_ids``; LookupError names any
    position or id that matched nothing."""
    wanted_ids = {str(uuid.UUID(e)) for e in event_ids}
    picked = [d for d in letters if d.position in positions or d.event_id in wanted_ids]
    missing = sorted(set(positions) - {d.position for d in picked}) + sorted(wanted_ids - {d.event_id for d in picked})
    if missing:
        raise LookupError(f"no dead letter at or with {', '.join(missing)}")
    return picked


async def replay(producer: AIOKafkaProducer, letters: Sequence[DeadLetter]) -> None:
    """Put each dead letter back on its original topic (value, key, its own headers) and wait for the broker."""
    for letter in letters:
        headers: Headers = [(k, v) for k, v in letter.record.headers if not k.startswith(PREFIX)]
        headers.append((REPLAYED_FROM, f"{letter.record.topic}:{letter.position}".encode()))
        await producer.send_and_wait(letter.origin, letter.record.value, key=letter.record.key, headers=headers)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``kefu dlq list`` and ``kefu dlq replay``."""
    from kefu.settings import ServiceSettings

    commands = parser.add_subparsers(dest="dlq_command", required=True)
    listing = commands.add_parser("list", help="show the records on dead-letter topics, without their content")
    again = commands.add_parser("replay", help="put chosen dead letters back on their original topic after a fix")
    for sub in (listing, again):
        sub.add_argument(
            "--bootstrap",
            default=None,
            help=f"Kafka bootstrap servers (default KEFU_KAFKA_BOOTSTRAP, {ServiceSettings().kafka_bootstrap})",
        )
        sub.add_argument(
            "--topic",
            action="append",
            default=[],
            help="a topic or its .dlq sibling (repeatable; default every kefu topic)",
        )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    again.add_argument(
        "--offset",
        action="append",
        default=[],
        metavar="PARTITION:OFFSET",
        help="a dead letter's position on its .dlq topic, as list shows it (repeatable; with --topic)",
    )
    again.add_argument("--event-id", action="append", default=[], help="an event or command id (repeatable)")
    again.add_argument("--all", action="store_true", help="every dead letter of the topics")


def main(args: argparse.Namespace) -> int:
    """Run ``kefu dlq list`` or ``kefu dlq replay``; print one line per dead letter."""
    from kefu.settings import ServiceSettings

    bootstrap = args.bootstrap or ServiceSettings().kafka_bootstrap
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)  # a broker away is said once, below
    try:
        return _run(args, bootstrap)
    finally:
        aiokafka_log.setLevel(level)  # run in process (tests, embedding): leave logging as it was


def _run(args: argparse.Namespace, bootstrap: str) -> int:
    topics = dlq_topics(args.topic)
    if args.dlq_command == "replay" and not (args.offset or args.event_id or args.all):
        print("kefu dlq replay: choose records with --offset, --event-id or --all", file=sys.stderr)
        return 2
    if args.dlq_command == "replay" and args.offset and len(topics) != 1:
        print("kefu dlq replay: --offset needs exactly one --topic (positions are per topic)", file=sys.stderr)
        return 2
    try:
        if args.dlq_command == "list":
            for letter in asyncio.run(read(bootstrap, topics)):
                print(json.dumps(letter.describe(), ensure_ascii=False) if args.json else _line(letter))
            return 0
        return asyncio.run(_replay(bootstrap, topics, args))
    except (KafkaError, OSError, TimeoutError) as exc:
        print(
            f"kefu dlq: the broker at {bootstrap} did not answer ({type(exc).__name__}); is the stack running? "
            "(KEFU_KAFKA_BOOTSTRAP or --bootstrap)",
            file=sys.stderr,
        )
        return 1


async def _replay(bootstrap: str, topics: list[str], args: argparse.Namespace) -> int:
    from kefu.kafka import create_producer

    letters = await read(bootstrap, topics)
    try:
        picked = letters if args.all else chosen(letters, positions=args.offset, event_ids=args.event_id)
    except (LookupError, ValueError) as exc:
        print(f"kefu dlq replay: {exc}", file=sys.stderr)
        return 1
    producer = create_producer(bootstrap)
    try:
        await producer.start()
        await replay(producer, picked)
    finally:
        await producer.stop()
    for letter in picked:
        print(f"replayed {letter.record.topic} {letter.position} to {letter.origin} (event {letter.event_id})")
    return 0


def _line(letter: DeadLetter) -> str:
    d = letter.describe()
    return (
        f"{d['dlq_topic']} {d['position']}  {d['at']}  from {d['topic']}[{d['partition']}]@{d['offset']}  "
        f"event {d['event_id']}  attempts {d['attempts']}  {d['class']}: {d['reason']}"
    )
