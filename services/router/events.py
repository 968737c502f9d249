"""The router's handlers of what its consumers receive: one per event, each one change applied once.

``on_contact`` takes a customer's message (``kefu.contacts.v1``): it opens a contact, joins the open one, or
abandons it. ``on_command`` takes a routing command (``kefu.routing.commands.v1``): it moves the contact, or
records why not. A redelivered event or command is recognised by its id and changes nothing.

The consumers hand them the records of a fetch (``kefu.kafka.consume_batches``): ``on_contacts`` and
``on_commands`` apply them in order, each in a change of its own, up to ``BATCH_RECORDS`` in one transaction
(``RoutingService.changes``: each record decides on what the records before it did).
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID

from prometheus_client import Counter

from contracts import CONTACTS, ROUTING_COMMANDS, ContactEvent, ContactEventKind, RoutingCommand
from kefu.batch import Stopped
from kefu.logs import bind
from services.router import intake, notices
from services.router.adapters import contact_store, customers, repository
from services.router.domain.decisions import ContactAbandoned, ContactArrived, ContactMoved
from services.router.domain.preconditions import refusal
from services.router.service import Change, RoutingService

log = logging.getLogger(__name__)

T = TypeVar("T", ContactEvent, RoutingCommand)

CONTACTS_APPLIED = Counter("kefu_router_contact_events_total", "Contact events consumed", ["outcome"])
COMMANDS_APPLIED = Counter("kefu_router_commands_total", "Routing commands consumed", ["outcome"])

# records of a fetch applied in one transaction, the routing lock held: a desktop's request waits for at most this
# many (a fetch above capacity holds up to kefu.consume.MAX_RECORDS, seconds of work); a transaction's fixed cost
# (marking ids, the late writes, the commit) is a few records' worth
BATCH_RECORDS = 50

ESCALATION_AGENT_WAIT = timedelta(minutes=5)  # an escalation to one agent (a TAM) waits this long for them first


async def on_contact(service: RoutingService, event: ContactEvent) -> None:
    """Apply one inbound contact event, once: open a contact, append to the open one, or abandon it."""
    await _alone(on_contacts(service, [event]))


async def on_contacts(service: RoutingService, events: Sequence[ContactEvent]) -> None:
    """Apply inbound contact events in order, each once (``on_contact``), in transactions of up to
    ``BATCH_RECORDS`` (``RoutingService.changes``); ``Stopped`` at one that fails, saying which of those before it
    are committed."""
    await _each_once(service, events, CONTACTS, lambda e: e.event_id, _contact, CONTACTS_APPLIED)


async def _contact(service: RoutingService, change: Change, event: ContactEvent) -> str:
    conn, now = change.conn, service.clock()
    existing = service.open_contact(event.conversation_key)
    bind(contact_id=existing)
    if event.kind is ContactEventKind.ABANDONED:
        decided = await change.decide(ContactAbandoned(existing), now) if existing is not None else []
        return "abandoned" if decided else "abandon_ignored"
    if existing is not None:
        await customers.resolve(conn, event.channel, event.customer)
        change.later.message(existing, event)
        change.notify(notices.of_message(service.state, existing, event))
        return "appended"
    await _open(service, change, event)
    return "opened"


async def _open(service: RoutingService, change: Change, event: ContactEvent) -> None:
    """The first message of a conversation: its customer, the contact placed by the rules, then routed."""
    conn, now = change.conn, service.clock()
    ref = await intake.new_contact(conn, service.config, service.state.agents, event, now)
    bind(contact_id=ref.id)
    change.later.message(ref.id, event)
    await change.decide(ContactArrived(ref), now, opened=contact_store.opening(ref, event))


async def on_command(service: RoutingService, command: RoutingCommand) -> None:
    """Apply a routing command once: move the contact to the target group's queue, at the given priority.

    A command for a contact no longer open, or naming a group no queue serves, is recorded and skipped (logged):
    redelivering it would change nothing. One whose precondition no longer holds is refused with a routing event
    saying why, so that its sender looks again.
    """
    await _alone(on_commands(service, [command]))


async def on_commands(service: RoutingService, commands: Sequence[RoutingCommand]) -> None:
    """Apply routing commands in order, each once (``on_command``), in transactions of up to
    ``BATCH_RECORDS`` (``RoutingService.changes``); ``Stopped`` at one that fails, saying which of those before it
    are committed."""
    await _each_once(service, commands, ROUTING_COMMANDS, lambda c: c.command_id, _command, COMMANDS_APPLIED)


async def _command(service: RoutingService, change: Change, command: RoutingCommand) -> str:
    state, now = service.state, service.clock()
    queue_id = command.target_queue_id or service.config.queue_of_group(command.target_group)
    if queue_id is None or queue_id not in state.queues:
        log.warning("routing command %s: no queue for group %r", command.command_id, command.target_group)
        return "no_queue"
    if (refused := refusal(state, command.contact_id, command.precondition)) is not None:
        # computed from a view that is stale now (an agent accepted meanwhile): the sender looks again
        change.later.events += await repository.refuse_command(change.conn, command, refused, now)
        change.announced = True
        log.info("routing command %s refused: %s", command.command_id, refused.reason)
        return "refused"
    open_now = command.contact_id in state.waiting or any(
        a.contact.id == command.contact_id for a in state.assignments.values()
    )
    if not open_now:
        return "contact_closed"
    await change.decide(_moved(service, command, queue_id, now), now)
    return "moved"


def _moved(service: RoutingService, command: RoutingCommand, queue_id: str, now: datetime) -> ContactMoved:
    """The move a command asks for: to the queue, at its priority, waiting first for the agent it names."""
    reason = f"{command.type.value} to {command.target_group}: {command.reason}"
    agent = command.target_agent_id if command.target_agent_id in service.state.agents else None
    return ContactMoved(
        command.contact_id,
        queue_id,
        reason[:1024],
        priority=command.priority,
        preferred_agent=agent,
        prefer_until=now + ESCALATION_AGENT_WAIT if agent else None,
    )


async def _alone(applied: Awaitable[None]) -> None:
    """One record's batch, failing as the record itself failed (not as ``Stopped``)."""
    try:
        await applied
    except Stopped as stopped:
        raise stopped.cause from None


async def _each_once(
    service: RoutingService,
    items: Sequence[T],
    topic: str,
    id_of: Callable[[T], UUID],
    apply: Callable[[RoutingService, Change, T], Awaitable[str]],
    counter: Counter,
) -> None:
    """Apply ``items`` in order, each in a change of its own and once (its id marked applied with it); a redelivered
    one is counted a duplicate. The outcome is counted when its change commits.

    A transaction takes at most ``BATCH_RECORDS`` of them, and the routing lock is let go between two: a desktop's
    request waiting for the lock goes before the rest of a large fetch. ``Stopped`` counts the records of the whole
    fetch."""

    async def in_one_transaction(part: Sequence[T]) -> None:
        # without savepoints the records stand or fall together, so their ids are marked in one statement before
        # the first is applied, instead of one a record; a second copy of an id among them is a duplicate too
        async with service.changes() as batch:
            unseen = set()
            if not batch.savepoints:
                unseen = await contact_store.mark_all_applied(batch.conn, [id_of(item) for item in part], topic)
            for item in part:
                async with batch.change(item) as change:
                    if batch.savepoints:  # a step may roll back alone: its mark goes with it
                        unseen = await contact_store.mark_all_applied(change.conn, [id_of(item)], topic)
                    new = id_of(item) in unseen
                    unseen.discard(id_of(item))
                    outcome = await apply(service, change, item) if new else "duplicate"
                    change.count(counter.labels(outcome).inc)

    for start in range(0, len(items), BATCH_RECORDS):
        try:
            await in_one_transaction(items[start : start + BATCH_RECORDS])
        except Stopped as stopped:
            raise Stopped(start + stopped.applied, stopped.cause, at=start + stopped.at) from stopped.cause
