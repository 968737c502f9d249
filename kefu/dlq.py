"""Dead letters: what the consumer loop writes to a topic's ``.dlq`` sibling (read back by ``tools.dlq``).

A dead letter is the record as it was (value, key, headers) plus ``kefu-dlq-*`` headers: where it came from
(topic, partition, offset), the event or command id when it parsed, how many attempts, when, the reason class
(``unparseable``, ``data_error``, ``integrity_error``, ``validation_error``, ``encoding_error``,
``retries_exhausted``) and a reason naming the failure by exception class and SQLSTATE or by field and error
type, never by content (``kefu.failures.summary``). ``kefu_dlq_records_total{topic, reason}`` counts them.

``kefu dlq replay`` puts chosen dead letters back on their original topic, value, key and headers unchanged
(plus ``kefu-replayed-from``), once the cause is fixed. Consumers apply each event id once, so replaying a
record that was applied meanwhile changes nothing.
"""

import functools
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from contracts.topics import dlq

DLQ_RECORDS = Counter("kefu_dlq_records_total", "Records sent to a dead-letter topic", ["topic", "reason"])

PREFIX = "kefu-dlq-"
REASON, CLASS, TOPIC, PARTITION, OFFSET, ATTEMPTS, AT, EVENT_ID = (
    PREFIX + name for name in ("reason", "class", "topic", "partition", "offset", "attempts", "at", "event-id")
)
REPLAYED_FROM = "kefu-replayed-from"
UNPARSEABLE = "unparseable"
RETRIES_EXHAUSTED = "retries_exhausted"

Headers = list[tuple[str, bytes]]


def unparseable(model: type[BaseModel], exc: ValidationError) -> str:
    """Why a record is not a ``model``: each invalid field's path and error type (a dict key is ``*``)."""
    known = _field_names(model)
    problems: dict[str, None] = {}
    for error in exc.errors(include_url=False, include_input=False):
        path = ".".join(str(p) if isinstance(p, int) or p in known else "*" for p in error["loc"])
        problems[f"{path} {error['type']}" if path else error["type"]] = None
    return f"{model.__name__} invalid: {'; '.join(problems)}"


@functools.cache
def _field_names(model: type[BaseModel]) -> frozenset[str]:
    schema = model.model_json_schema()
    names = set(schema.get("properties", {}))
    for definition in schema.get("$defs", {}).values():
        names |= set(definition.get("properties", {}))
    return frozenset(names)


async def dead_letter(
    producer: AIOKafkaProducer,
    record: ConsumerRecord[bytes, bytes],
    *,
    reason_class: str,
    reason: str,
    attempts: int,
    event_id: uuid.UUID | None = None,
) -> None:
    """Put ``record`` on its topic's dead-letter topic with the reason; return once the broker holds it."""
    headers: Headers = [(k, v) for k, v in record.headers if not k.startswith(PREFIX)]
    headers += [
        (REASON, reason[:1000].encode()),
        (CLASS, reason_class.encode()),
        (TOPIC, record.topic.encode()),
        (PARTITION, str(record.partition).encode()),
        (OFFSET, str(record.offset).encode()),
        (ATTEMPTS, str(attempts).encode()),
        (AT, datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
    ]
    if event_id is not None:
        headers.append((EVENT_ID, str(event_id).encode()))
    await producer.send_and_wait(dlq(record.topic), record.value, key=record.key, headers=headers)
    DLQ_RECORDS.labels(record.topic, reason_class).inc()
