"""Clocks start when kefu received the contact (issue 9, item 5): the escalation service on a real PostgreSQL, with
its clock in the test's hands, so 30 minutes pass without waiting for them."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Channel, ContactEvent, Customer, Message, RoutingEvent, RoutingEventType
from kefu import db
from services.escalation.adapters.orm import cases, contact_messages, timers
from services.escalation.adapters.timers import TimerStore
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.service import EscalationService

pytestmark = pytest.mark.integration

RECEIVED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SLA = timedelta(minutes=30)
POLICY = EscalationPolicy.model_validate(
    {
        "targets": {"supervisors": {"group": "supervisors", "queue": "complaints", "priority": 60}},
        "triggers": {"sla": {"target": "supervisors", "clocks": [{"queue": "email", "first_response_seconds": 1800}]}},
    }
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url)
    yield engine
    await engine.dispose()


def old_email(*, sent: datetime, received: datetime) -> ContactEvent:
    """An e-mail whose ``Date`` header (``occurred_at``) says ``sent``, which kefu received at ``received``."""
    return ContactEvent(
        event_id=uuid.uuid4(),
        channel=Channel.EMAIL,
        account_id="support",
        conversation_key="email:support:<old@example.com>",
        dedup_key="<old@example.com>",
        customer=Customer(platform_id="li@example.com"),
        message=Message(text="我的订单还没到"),
        occurred_at=sent,
        received_at=received,
    )


def queued(event: ContactEvent, at: datetime) -> RoutingEvent:
    return RoutingEvent(
        event_id=uuid.uuid4(),
        type=RoutingEventType.QUEUED,
        occurred_at=at,
        contact_id=event.event_id,
        conversation_key=event.conversation_key,
        channel=event.channel,
        queue_id="email",
    )


async def pending_timers(engine: AsyncEngine) -> dict[str, datetime]:
    async with engine.connect() as conn:
        return {kind: due for kind, due in await conn.execute(select(timers.c.kind, timers.c.due_at))}


async def case_triggers(engine: AsyncEngine, contact_id: uuid.UUID) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(cases.c.trigger).where(cases.c.contact_id == contact_id))).scalars())


async def test_an_email_dated_8_hours_ago_breaches_30_minutes_after_kefu_received_it(engine: AsyncEngine) -> None:
    clock = Clock(RECEIVED + timedelta(seconds=1))
    escalator = EscalationService(engine, POLICY, clock=clock)
    email = old_email(sent=RECEIVED - timedelta(hours=8), received=RECEIVED)
    # in either order: the router queued it half a second after kefu received it
    await escalator.contact_message(email)
    await escalator.routing_step(queued(email, RECEIVED + timedelta(milliseconds=500)))
    assert await case_triggers(engine, email.event_id) == []  # not breached at arrival

    assert (await pending_timers(engine))["sla.first_response.breach"] == RECEIVED + SLA
    async with engine.connect() as conn:
        (shown,) = (await conn.execute(select(contact_messages.c.at))).scalars()
    assert shown == RECEIVED  # the message's time, as the clocks count it

    clock.now = RECEIVED + SLA - timedelta(seconds=1)  # anything evaluating it just before: still nothing
    await escalator.routing_step(queued(email, RECEIVED + timedelta(milliseconds=500)))
    assert await case_triggers(engine, email.event_id) == []

    clock.now = RECEIVED + SLA
    breach = await TimerStore(engine).get(f"{email.event_id}/sla.first_response.breach/{RECEIVED.isoformat()}")
    assert breach is not None
    async with engine.begin() as conn:
        await escalator.timer_due(breach, conn)
    assert await case_triggers(engine, email.event_id) == ["sla.first_response.breach"]


async def test_the_clock_starts_at_receipt_when_the_router_queued_it_later_and_the_sender_claims_later_still(
    engine: AsyncEngine,
) -> None:
    """The router's ``queued`` first, 40 s after receipt (a backlog), then the message, whose ``occurred_at`` is
    2 h ahead (a skewed phone or platform clock): the clock still starts at ``received_at``."""
    clock = Clock(RECEIVED + timedelta(seconds=41))
    escalator = EscalationService(engine, POLICY, clock=clock)
    email = old_email(sent=RECEIVED + timedelta(hours=2), received=RECEIVED)
    await escalator.routing_step(queued(email, RECEIVED + timedelta(seconds=40)))
    await escalator.contact_message(email)
    async with engine.connect() as conn:
        breach = select(func.min(timers.c.due_at)).where(timers.c.kind == "sla.first_response.breach")
        assert (await conn.execute(breach)).scalar() == RECEIVED + SLA
