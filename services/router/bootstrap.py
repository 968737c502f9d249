"""Wires the router: engine, producer, consumer, routing service, outbox relay and background tasks.

Every async resource is started and stopped here, in one place, in reverse order.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import CONTACTS, ROUTING_COMMANDS, ContactEvent, RoutingCommand
from kefu import db, kafka
from kefu.auth import AuthConfig, TokenRegistry
from kefu.config_file import ConfigError, Report
from kefu.outage import log_retry
from kefu.outbox import OutboxRelay
from kefu.tokens import TokenStore
from services.router.adapters import feed_store
from services.router.adapters.feed import AgentFeed
from services.router.adapters.orm import outbox
from services.router.config import RouterSettings
from services.router.domain.config import RoutingConfig
from services.router.service import RoutingService
from services.router.shifts import ShiftKeeper
from services.router.shifts import run as keep_shifts

log = logging.getLogger(__name__)


@dataclass
class Router:
    settings: RouterSettings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    service: RoutingService
    feed: AgentFeed
    tokens: TokenRegistry
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running(settings: RouterSettings, checked: Report) -> AsyncIterator[Router]:
    """Start the router's resources and background loops for the ``checked`` configuration (its routing and auth
    sections); stop them all on exit."""
    try:
        config_text = settings.config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{settings.config_path}: cannot read: {exc.strerror}"]) from exc
    config = checked.section("routing", RoutingConfig)
    engine = db.create_engine(settings.database_url)
    tokens = TokenRegistry(checked.section("auth", AuthConfig), stored=TokenStore(engine).find)
    producer = kafka.create_producer(settings.kafka_bootstrap)
    consumer = kafka.create_consumer(settings.kafka_bootstrap, CONTACTS, group_id=settings.consumer_group)
    # a group of its own: members of one group subscribed to different topics make every rebalance wait on both
    commands = kafka.create_consumer(
        settings.kafka_bootstrap, ROUTING_COMMANDS, group_id=f"{settings.consumer_group}-commands"
    )
    feed = AgentFeed()
    relay = OutboxRelay(engine, outbox, producer)
    service = RoutingService(engine=engine, config=config, feed=feed, on_commit=relay.wake)
    router = Router(settings, engine, producer, service, feed, tokens)
    try:
        await service.start(config_text, settings.config_path)
        async with engine.connect() as conn:  # new desktop streams start after the newest feed item
            feed.last_id = await feed_store.newest_id(conn)
        await producer.start()
        await consumer.start()
        await commands.start()
        router.tasks = [
            asyncio.create_task(
                kafka.consume(consumer, producer, ContactEvent, service.handle_contact), name="consume"
            ),
            asyncio.create_task(
                kafka.consume(commands, producer, RoutingCommand, service.handle_command), name="commands"
            ),
            asyncio.create_task(relay.run(), name="outbox"),
            asyncio.create_task(_tick(service, settings.offer_tick_seconds), name="timers"),
            asyncio.create_task(keep_shifts(ShiftKeeper(service), settings.shift_check_seconds), name="shifts"),
            asyncio.create_task(feed_store.keep_pruned(engine, keep_seconds=settings.feed_keep_seconds), name="feed"),
        ]
        for task in router.tasks:
            task.add_done_callback(_report_crash)
        yield router
    finally:
        for task in router.tasks:
            task.cancel()
        await asyncio.gather(*router.tasks, return_exceptions=True)
        await consumer.stop()
        await commands.stop()
        if router.tasks:  # it ran: publish what its last commits left in the outbox
            await relay.drain()
        await producer.stop()
        await engine.dispose()


async def _tick(service: RoutingService, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await service.tick()
        except Exception as exc:
            log_retry(log, exc, "acting on due timers failed; will retry")


def _report_crash(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s died", task.get_name(), exc_info=task.exception())
