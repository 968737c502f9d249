"""Wires the escalation service: the policy, engine, producer, the two event consumers, the timer runner,
the case outbox relay, the notifier and the API tokens; started and stopped in one place."""

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import CONTACTS, ROUTING_EVENTS, ContactEvent, RoutingEvent
from kefu import db, kafka
from kefu.auth import AuthConfig
from kefu.background import background
from kefu.config_file import Report
from kefu.outbox import OutboxRelay
from kefu.tokens import Tokens, tokens_of
from services.escalation.access import CaseAccess
from services.escalation.adapters.notifier import Notifier
from services.escalation.adapters.orm import outbox
from services.escalation.adapters.timer_runner import TimerRunner
from services.escalation.config import EscalationSettings
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.service import EscalationService
from services.escalation.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


@dataclass
class Escalation:
    """The running escalation service as its routes (``app.state.escalation``) and the tools see it."""

    settings: EscalationSettings
    engine: AsyncEngine
    producer: AIOKafkaProducer
    tokens: Tokens
    relay: OutboxRelay
    service: EscalationService
    access: CaseAccess


def webhook_secrets(policy: EscalationPolicy) -> dict[str, str]:
    """Each webhook's signing secret from the environment variable it names; one without is dead-lettered."""
    secrets: dict[str, str] = {}
    for target in policy.targets.values():
        for hook in target.notify:
            secret = os.environ.get(hook.secret)
            if secret:
                secrets[hook.name] = secret
            else:
                log.warning(
                    "webhook %s: %s is not set; its notifications will be dead-lettered", hook.name, hook.secret
                )
    return secrets


@contextlib.asynccontextmanager
async def running(
    settings: EscalationSettings, checked: Report, groups: Mapping[str, frozenset[str]]
) -> AsyncIterator[Escalation]:
    """Consume contacts and routing events, fire timers, relay case events, notify; stop everything on exit, in
    reverse order.

    ``checked`` is the configuration with the policy, checked against the routing section (``tools.assemble``);
    ``groups`` is each router group's agents, who may act on the cases escalated to their group.
    """
    policy = checked.section("escalation", EscalationPolicy)
    engine = db.create_engine(settings.database_url)
    producer = kafka.create_producer(settings.kafka_bootstrap)
    # a group per topic: members of one group subscribed to different topics make every rebalance wait on both;
    # background consumers (longer fetch waits: a third of the broker's reads idle, kefu.kafka): nobody waits on a
    # record here, whose effects are timers, cases and notifications
    contacts, routing = (
        kafka.create_consumer(
            settings.kafka_bootstrap, topic, group_id=f"{settings.consumer_group}-{name}", background=True
        )
        for name, topic in (("contacts", CONTACTS), ("routing", ROUTING_EVENTS))
    )
    http = httpx.AsyncClient(follow_redirects=False)
    relay = OutboxRelay(engine, outbox, producer)
    notifier = Notifier(
        engine,
        http,
        webhook_secrets(policy),
        max_attempts=settings.notify_max_attempts,
        read_timeout=settings.notify_timeout_seconds,
        lease=settings.notify_timeout_seconds + 60,
    )

    def outbound() -> None:
        relay.wake()
        notifier.wake()

    runner = TimerRunner(engine, committed=outbound)

    def committed(tx: UnitOfWork) -> None:
        if tx.outbound:
            outbound()
        if tx.due is not None:
            runner.wake(tx.due)  # a timer just scheduled may be due before the one the runner sleeps towards

    service = EscalationService(engine, policy, after_commit=committed)
    tokens = tokens_of(checked.section("auth", AuthConfig), engine)
    escalation = Escalation(settings, engine, producer, tokens, relay, service, CaseAccess(policy, groups))
    async with contextlib.AsyncExitStack() as stack:
        # every stop is registered before anything starts: a start that fails half-way still closes what it opened
        for stop in (engine.dispose, http.aclose, producer.stop):
            stack.push_async_callback(stop)
        stack.push_async_callback(kafka.stop_all, contacts, routing)
        await kafka.start_all(producer, contacts, routing)
        stack.push_async_callback(relay.drain)  # it ran: publish what its last commits left in the outbox
        loops = {
            # the records of a fetch in one transaction (issue 12)
            "contacts": kafka.consume_batches(contacts, producer, ContactEvent, service.contact_messages),
            "routing": kafka.consume_batches(routing, producer, RoutingEvent, service.routing_steps),
            "timers": runner.run(service.timer_due),
            "outbox": relay.run(),
            "notifier": notifier.run(),
        }
        await stack.enter_async_context(background(loops))
        yield escalation
