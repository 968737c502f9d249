"""Wires the escalation service: engine, producer (dead letters), routing-event consumer."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import ROUTING_EVENTS, RoutingEvent
from kefu import db, kafka
from services.escalation.adapters.store import record_routing_event
from services.escalation.config import EscalationSettings

log = logging.getLogger(__name__)


@dataclass
class Escalation:
    settings: EscalationSettings
    engine: AsyncEngine
    producer: AIOKafkaProducer


@contextlib.asynccontextmanager
async def running(settings: EscalationSettings) -> AsyncIterator[Escalation]:
    """Start consuming routing events; stop everything on exit."""
    engine = db.create_engine(settings.database_url)
    producer = kafka.create_producer(settings.kafka_bootstrap)
    consumer = kafka.create_consumer(settings.kafka_bootstrap, ROUTING_EVENTS, group_id=settings.consumer_group)
    task: asyncio.Task[None] | None = None
    try:
        await producer.start()
        await consumer.start()
        task = asyncio.create_task(_consume(consumer, producer, engine), name="consume")
        yield Escalation(settings, engine, producer)
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await engine.dispose()


async def _consume(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, engine: AsyncEngine) -> None:
    async def handle(event: RoutingEvent) -> None:
        await record_routing_event(engine, event)

    await kafka.consume(consumer, producer, RoutingEvent, handle)
