"""A broker outage in the log: one line when a Kafka client loses the broker, one when it reaches it again.

aiokafka logs each failed connect, metadata refresh, fetch and heartbeat, at ERROR: a thousand lines a
minute per client while the broker is away. ``watch`` gives a producer or consumer an ``Availability``
(``kefu.outage``) and ``install`` puts a filter on aiokafka's loggers: a record of connection trouble
(one carrying a connection, timeout or retriable Kafka error, or saying the metadata or the group
coordinator was lost) marks the client that logged it down, the first time with one WARNING line of
ours, and is not written itself; the broker's next answer to that client logs it back. A record of
anything else passes unchanged.

A record is the client's when it is logged by a task the client started (its sender, fetcher,
heartbeat, metadata synchroniser): they run in the context ``start`` had, where ``watch`` set the
client's ``Availability``. Records logged elsewhere (a short-lived admin client) share one. Any answer
from the broker (a request's response, a metadata refresh) marks the client up again.
"""

import logging
from contextvars import ContextVar
from typing import Any

from kefu.outage import Availability, unavailable

_client: ContextVar[Availability | None] = ContextVar("kefu_kafka_client", default=None)
_unattributed = Availability("broker", "kafka client")

# the few trouble records whose arguments carry no exception to recognise them by
_TROUBLE = frozenset(
    {
        "Unable to update metadata from %s",
        "Marking the coordinator dead (node %s)for group %s.",
        "Heartbeat session expired - marking coordinator dead",
    }
)


def _connection_trouble(record: logging.LogRecord) -> bool:
    if record.levelno < logging.WARNING:
        return False
    if record.msg in _TROUBLE:
        return True
    carried = [
        *(record.args if isinstance(record.args, tuple) else ()),
        record.exc_info[1] if record.exc_info else None,
    ]
    return any(
        isinstance(value, OSError | TimeoutError) or (isinstance(value, Exception) and unavailable(value) == "broker")
        for value in carried
    )


class _OutageFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _connection_trouble(record):
            return True
        (_client.get() or _unattributed).down(record.getMessage()[:300])
        return False


_FILTER = _OutageFilter()


def install() -> None:
    """Filter every aiokafka logger (a filter on a logger sees only that logger's own records)."""
    names = [name for name in logging.Logger.manager.loggerDict if name == "aiokafka" or name.startswith("aiokafka.")]
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def watch(client: Any, name: str, bootstrap: str) -> Availability:
    """Give an unstarted aiokafka producer or consumer an ``Availability`` named ``name``."""
    availability = Availability("broker", f"{name} -> {bootstrap}")
    start = client.start

    async def start_watched() -> None:
        token = _client.set(availability)
        try:
            await start()
        finally:
            _client.reset(token)

    def answered(*_: object) -> None:
        availability.up()
        _unattributed.up()

    # the producer's client is public, the consumer's is not; any answer of the broker means it is back
    kafka_client = client.client if hasattr(client, "client") else client._client
    send = kafka_client.send

    async def send_watched(*args: Any, **kwargs: Any) -> Any:
        response = await send(*args, **kwargs)
        answered()
        return response

    client.start = start_watched
    kafka_client.send = send_watched
    kafka_client.cluster.add_listener(answered)  # metadata requests do not go through send
    return availability
