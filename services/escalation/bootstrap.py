"""Wires the escalation service: engine, producer, routing-event consumer, case outbox relay, API tokens."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ROUTING_EVENTS, RoutingEvent
from kefu import db, kafka
from kefu.auth import AuthConfig, TokenRegistry
from kefu.config_file import load_section
from kefu.outbox import OutboxRelay
from services.escalation.adapters.orm import outbox
from services.escalation.adapters.store import record_routing_event
from services.escalation.config import EscalationSettings

log = logging.getLogger(__name__)


@dataclass
class Escalation:
    settings: EscalationSettings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    tokens: TokenRegistry
    relay: OutboxRelay
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running(settings: EscalationSettings) -> AsyncIterator[Escalation]:
    """Start consuming routing events and relaying case events; stop everything on exit."""
    tokens = TokenRegistry(load_section(settings.config_path, "auth", AuthConfig))
    engine = db.create_engine(settings.database_url)
    producer = kafka.create_producer(settings.kafka_bootstrap)
    consumer = kafka.create_consumer(settings.kafka_bootstrap, ROUTING_EVENTS, group_id=settings.consumer_group)
    escalation = Escalation(settings, engine, producer, tokens, OutboxRelay(engine, outbox, producer))
    try:
        await producer.start()
        await consumer.start()
        escalation.tasks = [
            asyncio.create_task(_consume(consumer, producer, engine), name="consume"),
            asyncio.create_task(escalation.relay.run(), name="outbox"),
        ]
        yield escalation
    finally:
        for task in escalation.tasks:
            task.cancel()
        await asyncio.gather(*escalation.tasks, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await engine.dispose()


async def _consume(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, engine: AsyncEngine) -> None:
    async def handle(event: RoutingEvent) -> None:
        await record_routing_event(engine, event)

    await kafka.consume(consumer, producer, RoutingEvent, handle)
