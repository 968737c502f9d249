"""The service tier: the router's ``RoutingService`` and the escalation service's ``EscalationService`` on a real,
migrated PostgreSQL (the integration tier's ``postgres`` and ``database_url``), without Kafka: no consumers, no
producer, no relay. A test calls the handlers (``services.router.events``/``commands``, ``EscalationService``) as
the consumers would, and reads what would be published from the service's outbox table. Time is a ``Clock`` the
test moves."""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kefu import db
from services.escalation.adapters.orm import timers
from services.escalation.adapters.timers import COLUMNS as TIMER_COLUMNS
from services.escalation.adapters.timers import PENDING as TIMER_PENDING
from services.escalation.adapters.timers import Timer, timer_of
from services.escalation.config import EscalationSettings
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.service import EscalationService
from services.router.adapters.feed import AgentFeed
from services.router.adapters.orm import outbox as router_outbox
from services.router.config import RouterSettings
from services.router.domain.config import RoutingConfig
from services.router.service import RoutingService
from tests.integration.conftest import (  # the integration tier's servers, not a copy of them
    CONFIG,
    database_url,
    escalation_config_path,
    migrated_template,
    postgres,
)
from tools.assemble import escalation_config, router_config

__all__ = ["database_url", "escalation_config_path", "migrated_template", "postgres"]

TimerHandler = Callable[[Timer, AsyncConnection], Awaitable[None]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "service: a service's handlers on a real PostgreSQL, without Kafka")


@dataclass
class Clock:
    """A clock that stands still until the test moves it."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """The integration tier's small configuration: one site, two queues, three agents."""
    path = tmp_path / "kefu.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@dataclass
class Router:
    """A router as ``services.router.bootstrap.running`` builds it, minus Kafka: its service, engine and feed."""

    service: RoutingService
    engine: AsyncEngine
    feed: AgentFeed
    commits: list[None]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def start_router(engine: AsyncEngine, database_url: str, config_path: Path, clock: Clock) -> Router:
    """The router's service on ``engine`` for the configuration at ``config_path``, started (state loaded) as
    ``running`` starts it; ``commits`` counts the commits that left rows for the outbox relay."""
    settings = RouterSettings(database_url=database_url, config_path=config_path)
    config = router_config(settings, log_warnings=False).section("routing", RoutingConfig)
    feed = AgentFeed()
    commits: list[None] = []
    service = RoutingService(
        engine=engine, config=config, feed=feed, on_commit=lambda: commits.append(None), clock=clock
    )
    await service.start(config_path.read_text(encoding="utf-8"), config_path)  # noqa: ASYNC240  # a small file
    return Router(service, engine, feed, commits)


@pytest.fixture
async def router(engine: AsyncEngine, database_url: str, config_path: Path, clock: Clock) -> Router:
    return await start_router(engine, database_url, config_path, clock)


async def outbox_rows(engine: AsyncEngine, table: Table = router_outbox) -> list[Any]:
    """What the outbox relay would publish (or has): the rows of ``table`` in the order they were written."""
    async with engine.connect() as conn:
        return list((await conn.execute(select(table).order_by(table.c.id))).mappings())


async def fire_due(engine: AsyncEngine, handler: TimerHandler, clock: Clock) -> int:
    """Fire the timers due by ``clock`` as the timer runner fires them (each in a transaction, handed to
    ``handler``, marked fired), until none is due: those a fired timer schedules too. How many fired."""
    fired = 0
    while True:
        async with engine.begin() as conn:
            query = select(*TIMER_COLUMNS).where(TIMER_PENDING, timers.c.due_at <= clock.now)
            due = [timer_of(row) for row in await conn.execute(query.order_by(timers.c.due_at).limit(1))]
            for timer in due:
                await handler(timer, conn)
                await conn.execute(update(timers).where(timers.c.id == timer.id).values(fired_at=clock.now))
        if not due:
            return fired
        fired += 1


@pytest.fixture
def escalation_settings(database_url: str, escalation_config_path: Path, tmp_path: Path) -> EscalationSettings:
    """Settings for the escalation service on the test's database; the policy is written by the test
    (``write_policy``)."""
    return EscalationSettings(
        database_url=database_url, config_path=escalation_config_path, policy_path=tmp_path / "escalation.yaml"
    )


def escalation_service(settings: EscalationSettings, engine: AsyncEngine, clock: Clock) -> EscalationService:
    """The escalation service as ``services.escalation.bootstrap.running`` builds it, minus Kafka, the relay, the
    notifier and the timer runner (``fire_due`` stands in for it)."""
    policy = escalation_config(settings, log_warnings=False).section("escalation", EscalationPolicy)
    return EscalationService(engine, policy, clock=clock)
