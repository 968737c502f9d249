"""Puts contact events on ``kefu.contacts.v1``, keyed by conversation, and waits for the broker's ack.

If the broker cannot be reached at start, the publisher keeps trying in the background and
refuses to publish (``BrokerUnavailable``) until it can; webhooks then get a 503 and are retried
by their platform.
"""

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts import CONTACTS, ContactEvent
from kefu import kafka
from services.channels.exceptions import BrokerUnavailable

log = logging.getLogger(__name__)


class ContactPublisher:
    def __init__(self, bootstrap: str, *, timeout: float) -> None:
        self._bootstrap = bootstrap
        self._timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect now if the broker is there, else keep trying in the background."""
        if not await self._try_connect():
            self._connecting = asyncio.create_task(self._connect_forever(), name="publisher-connect")

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
            self._connecting = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, event: ContactEvent) -> None:
        """Return once the broker holds ``event`` (``acks=all``); raise ``BrokerUnavailable`` otherwise."""
        if self._producer is None:
            raise BrokerUnavailable("not connected to the broker yet")
        try:
            async with asyncio.timeout(self._timeout):
                await self._producer.send_and_wait(
                    CONTACTS, event.model_dump_json().encode(), key=event.conversation_key.encode()
                )
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not acknowledge: {type(exc).__name__}") from exc

    async def reachable(self) -> None:
        """Raise unless the broker answers."""
        if self._producer is None:
            raise BrokerUnavailable("not connected to the broker yet")
        await kafka.broker_reachable(self._producer)

    async def _try_connect(self) -> bool:
        """Whether a producer could be started now; one that could not is stopped, also when the service stops
        (cancels this) halfway through its start, so no half-started producer is left to the garbage collector."""
        producer = kafka.create_producer(self._bootstrap)
        try:
            await producer.start()
        except KafkaError as exc:
            log.warning("broker %s not reachable yet: %s", self._bootstrap, exc)
            await producer.stop()
            return False
        except asyncio.CancelledError:
            await producer.stop()
            raise
        self._producer = producer
        return True

    async def _connect_forever(self) -> None:
        delay = 0.5
        while not await self._try_connect():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
