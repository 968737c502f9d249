"""The escalation service's handlers: one per event (a contact message, a routing step, a due timer) and per command
(escalate a contact by hand, act on a case). The HTTP routes and the two Kafka consumers call them and nothing else.

Each handler is one transaction (the consumers' ``contact_messages`` and ``routing_steps``: one for the records of a
fetch, each a ``kefu.batch`` step): the facts change, the policy runs on the new facts (``Escalator``), and what
it decides commits with them or not at all; the loops that carry it out are woken after the commit. Redelivered events
are applied once (their ids are keys), so replaying a topic changes nothing. A timer is a wake-up call: when it comes
due the policy runs again at its due time (or later) inside the timer's transaction, so a contact answered meanwhile
produces nothing; an acknowledgement timer climbs its case a level when nobody acknowledged it.
"""

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from contracts import ContactEvent, RoutingEvent, RoutingEventType
from kefu.logs import bind
from services.escalation.adapters import cases, facts
from services.escalation.adapters.timers import Timer
from services.escalation.domain import triggers
from services.escalation.domain.cases import Action
from services.escalation.domain.policy import EscalationPolicy
from services.escalation.escalator import Escalator
from services.escalation.exceptions import AlreadyEscalated
from services.escalation.unit_of_work import AfterCommit, Transactions, UnitOfWork

log = logging.getLogger(__name__)

Check = Callable[[str | None], None]
"""An authorization rule the route passes in: called with what it decides on, inside the transaction; raises to
refuse."""


class EscalationService:
    """The handlers, on one database and policy (timers are written through each unit of work, ``UnitOfWork.timers``,
    in its transaction); ``after_commit`` wakes the loops a commit concerns."""

    def __init__(
        self,
        engine: AsyncEngine,
        policy: EscalationPolicy,
        *,
        after_commit: AfterCommit = lambda _: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._transactions = Transactions(engine, after_commit)
        self._escalator = Escalator(policy)
        self._clock = clock

    async def contact_message(self, event: ContactEvent) -> None:
        """A customer message: record it once on its contact, then run the policy on the contact."""
        async with self._transactions.begin() as unit:
            await self._message(unit, event)

    async def contact_messages(self, events: Sequence[ContactEvent]) -> None:
        """Customer messages in order, in one transaction (``contact_message`` each, a step)."""
        async with self._transactions.batch() as batch:
            await batch.done.facts.preload(
                [event.event_id for event in events],  # the contact a conversation's first message opens
                conversations={event.conversation_key for event in events},
                customers={key for event in events if (key := facts.customer_key(event)) is not None},
                since=self._since(),
            )
            # stored at once (with savepoints each is stored in its step, which may roll back), when the batch can
            stored = None if batch.savepoints else await facts.store_messages(batch.done.conn, batch.done.facts, events)
            for event in events:
                async with batch.unit(event) as unit:
                    await self._message(unit, event, stored)

    async def _message(self, unit: UnitOfWork, event: ContactEvent, stored: set[uuid.UUID] | None = None) -> None:
        """Apply ``event`` (``stored``: the batch stored its messages, these ids now)."""
        contact_id = await facts.apply_message(unit.conn, unit.facts, event, stored)
        bind(contact_id=contact_id)
        if contact_id is not None:
            await self._escalator.reconsider(unit, contact_id, self._clock())

    async def routing_step(self, event: RoutingEvent) -> None:
        """A routing step: fold it once into the contact's facts, then run the policy on the contact (and, when the
        contact began, on its customer's latest: a late contact may make that one a repeat)."""
        async with self._transactions.begin() as unit:
            await self._step(unit, event)

    async def routing_steps(self, events: Sequence[RoutingEvent]) -> None:
        """Routing steps in order, in one transaction (``routing_step`` each, a step)."""
        async with self._transactions.batch() as batch:
            await batch.done.facts.preload(
                {event.contact_id for event in events},
                customers={key for event in events if (key := facts.customer_key(event)) is not None},
                since=self._since(),
            )
            if not batch.savepoints:  # stored at once; with savepoints each is stored in its step, which may roll back
                batch.done.unapplied.update(await facts.store_routings(batch.done.conn, events))
            for event in events:
                async with batch.unit(event) as unit:
                    await self._step(unit, event, stored=not batch.savepoints)

    async def _step(self, unit: UnitOfWork, event: RoutingEvent, *, stored: bool = False) -> None:
        """Apply ``event`` (``stored``: the batch stored it already, if it was not a redelivery)."""
        if stored:
            if event.event_id not in unit.unapplied:
                return  # a redelivery, applied before (or earlier in the batch)
            unit.unapplied.discard(event.event_id)
        elif not await facts.store_routing(unit.conn, event):
            return  # a redelivery, applied before
        await facts.apply_routing(unit.facts, event)
        now = self._clock()
        if event.type is RoutingEventType.COMMAND_REFUSED:
            await self._escalator.withdraw_refused(unit, event, now)
        if event.type in facts.ENDS:  # completed (the contact resolved), abandoned or closed: nothing can fire
            self._escalator.stand_down(unit, event.contact_id)
        else:
            await self._escalator.reconsider(unit, event.contact_id, now)
        if event.type is RoutingEventType.QUEUED:
            await self._escalator.reconsider_latest_of_customer(unit, event.contact_id, now)

    def _since(self) -> datetime | None:
        """Since when a batch reads its customers' contacts: the repeat window, an hour wider (the clock moves on
        while the batch applies; a clock set back a little still finds them)."""
        since = self._escalator.repeat_window(self._clock())
        return None if since is None else since - timedelta(hours=1)

    async def timer_due(self, timer: Timer, conn: AsyncConnection) -> None:
        """A due timer, inside the timer runner's transaction: run the policy again, or climb an unacknowledged case.

        The runner wakes the outbox relay and the notifier after its commit, and looks for its own next timer.
        """
        if timer.contact_id is None:
            log.warning("timer %s has no contact; nothing to do", timer.key)
            return
        unit = UnitOfWork.on(conn)
        # the database said it is due; this clock may lag a little, and before the due time nothing would fire
        now = max(self._clock(), timer.due_at)
        trigger = timer.payload.get("trigger")
        if timer.kind.startswith("ack.") and isinstance(trigger, str):
            await self._escalator.climb(unit, timer.contact_id, trigger, now)
        else:
            await self._escalator.reconsider(unit, timer.contact_id, now)
        await unit.flush()

    async def escalate_by_hand(
        self,
        *,
        contact_id: uuid.UUID,
        target: str,
        reason: str,
        evidence: dict[str, Any],
        priority: int | None,
        actor: str,
        holder_check: Check | None = None,
    ) -> uuid.UUID:
        """Open a manual case (``TargetNotAllowed``, ``AlreadyEscalated``); return its id.

        ``holder_check`` (an agent asking) is called with the agent holding the contact, the contact's facts locked,
        and raises to refuse; then the routing command assumes the contact stays with that assignment, so the router
        refuses it if the contact moved on meanwhile. A contact this service has not seen yet (its events still on
        the way) can be escalated all the same.
        """
        now = self._clock()
        async with self._transactions.begin() as unit:
            known = await unit.facts.load(contact_id)
            precondition = None
            if holder_check is not None:
                holder_check(await facts.holder(unit.conn, unit.facts, contact_id) if known is not None else None)
                precondition = None if known is None else await self._escalator.assumed(unit, known)
            policy = self._escalator.policy
            decision = triggers.manual(known or triggers.unseen(contact_id, now), policy, target=target, reason=reason)
            if priority is not None:
                decision = replace(decision, priority=priority)
            case_id = await self._escalator.open(
                unit, contact_id, decision, now, actor=actor, evidence=evidence, precondition=precondition
            )
            if case_id is None:
                raise AlreadyEscalated(f"contact {contact_id} was already escalated to {target}")
            if known is not None:
                await facts.mark_fired(unit.facts, contact_id, [decision.trigger])
        return case_id

    async def act_on_case(self, case_id: uuid.UUID, action: Action, *, actor: str, note: str, check: Check) -> None:
        """Acknowledge, resolve or cancel a case (``UnknownCase``, ``CaseClosed``).

        ``check`` is called with the case's target, its row locked so that a climb cannot change it meanwhile (None
        for an unknown case), and raises to refuse.
        """
        now = self._clock()
        async with self._transactions.begin() as unit:
            check(await cases.lock_target(unit.conn, case_id))
            await cases.act(unit.conn, case_id, action, actor=actor, note=note, now=now)
            unit.outbound = True  # the case's event is in the outbox
