"""Wires the router: engine, producer, consumer, routing service, outbox relay and background tasks.

Every async resource is started and stopped here, in one place, in reverse order.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import CONTACTS, ROUTING_COMMANDS, ContactEvent, RoutingCommand
from kefu import applied, db, kafka
from kefu.auth import AuthConfig
from kefu.background import background
from kefu.config_file import ConfigError, Report
from kefu.outage import log_retry
from kefu.outbox import OutboxRelay
from kefu.tokens import Tokens, tokens_of
from services.router import events
from services.router.adapters import feed_store
from services.router.adapters.feed import AgentFeed
from services.router.adapters.orm import applied_events, outbox
from services.router.commands import tick
from services.router.config import RouterSettings
from services.router.domain.config import RoutingConfig
from services.router.service import RoutingService
from services.router.shifts import ShiftKeeper
from services.router.shifts import run as keep_shifts

log = logging.getLogger(__name__)


@dataclass
class Router:
    """The running router as its routes (``app.state.router``) and the tools see it."""

    settings: RouterSettings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    service: RoutingService
    feed: AgentFeed
    tokens: Tokens
    backlog: Callable[[], dict[str, int]]  # records received and not applied yet, by topic (``kefu.backlog``)


@contextlib.asynccontextmanager
async def running(settings: RouterSettings, checked: Report) -> AsyncIterator[Router]:
    """Start the router's resources and background loops for the ``checked`` configuration (its routing and auth
    sections); stop them all on exit, in reverse order."""
    try:
        config_text = settings.config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{settings.config_path}: cannot read: {exc.strerror}"]) from exc
    config = checked.section("routing", RoutingConfig)
    engine = db.create_engine(settings.database_url)
    producer = kafka.create_producer(settings.kafka_bootstrap)
    consumer = kafka.create_consumer(settings.kafka_bootstrap, CONTACTS, group_id=settings.consumer_group)
    # a group of its own: members of one group subscribed to different topics make every rebalance wait on both
    commands = kafka.create_consumer(
        settings.kafka_bootstrap, ROUTING_COMMANDS, group_id=f"{settings.consumer_group}-commands"
    )
    feed = AgentFeed()
    relay = OutboxRelay(engine, outbox, producer)
    service = RoutingService(engine=engine, config=config, feed=feed, on_commit=relay.wake)
    tokens = tokens_of(checked.section("auth", AuthConfig), engine)
    async with contextlib.AsyncExitStack() as stack:
        # every stop is registered before anything starts: a start that fails half-way still closes what it opened
        stack.push_async_callback(engine.dispose)
        stack.push_async_callback(producer.stop)
        stack.push_async_callback(kafka.stop_all, consumer, commands)
        # the database reached first (its error is the one a start without database nor broker reports), then the
        # consumers join their groups (a second or two on Tansu) while the state loads: neither waits for the other
        await db.ping(engine)
        joining = asyncio.ensure_future(kafka.start_all(producer, consumer, commands))
        stack.push_async_callback(_cancelled, joining)  # a state load that fails does not leave it running
        await service.start(config_text, settings.config_path)
        async with engine.connect() as conn:  # new desktop streams start after the newest feed item
            feed.last_id = await feed_store.newest_id(conn)
        await joining
        stack.push_async_callback(relay.drain)  # it ran: publish what its last commits left in the outbox
        loops = {
            # the records of a fetch in one transaction (issue 12)
            "consume": kafka.consume_batches(consumer, producer, ContactEvent, partial(events.on_contacts, service)),
            "commands": kafka.consume_batches(commands, producer, RoutingCommand, partial(events.on_commands, service)),
            "outbox": relay.run(),
            "timers": _tick(service, settings.offer_tick_seconds),
            "shifts": keep_shifts(ShiftKeeper(service), settings.shift_check_seconds),
            "feed": feed_store.keep_pruned(engine, keep_seconds=settings.feed_keep_seconds),
            "applied": applied.keep_pruned(engine, applied_events, applied_events.c.applied_at),
        }
        await stack.enter_async_context(background(loops))

        def backlog() -> dict[str, int]:
            return {CONTACTS: kafka.backlog_of(consumer), ROUTING_COMMANDS: kafka.backlog_of(commands)}

        yield Router(settings, engine, producer, service, feed, tokens, backlog)


async def _cancelled(task: "asyncio.Future[None]") -> None:
    """``task`` cancelled if it still runs, and waited for; its error was raised where it was awaited, or is dropped
    for the error that stopped the start before that."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: asyncio would log it as never retrieved


async def _tick(service: RoutingService, every: float) -> None:
    """Act on due timers every ``every`` seconds; a failed round is logged (an outage once, ``kefu.outage``) and not
    retried on its own: the next round acts on whatever is due by then."""
    while True:
        await asyncio.sleep(every)
        try:
            await tick(service)
        except Exception as exc:
            log_retry(log, exc, "acting on due timers failed; will retry")
