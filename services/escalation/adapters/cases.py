"""Escalation cases in PostgreSQL, the write side: each change in the caller's transaction with its audit entry and
the events it announces (``kefu.escalations.v1``, and the routing command that moves the contact) through the outbox.
What the API reads (a case with its trail, case lists) is ``services.escalation.queries``."""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts import ESCALATIONS, ROUTING_COMMANDS, EscalationEvent, RoutingCommand
from contracts.escalations import EscalationStatus
from contracts.routing import CommandPrecondition, RoutingCommandType
from kefu.outbox import add, outbox_row
from services.escalation.adapters.orm import case_audit, cases, outbox
from services.escalation.domain.cases import Action, UnknownCase, status_after
from services.escalation.domain.triggers import Decision


@dataclass(frozen=True, slots=True)
class Case:
    """What acting on a case needs of its row: where it stands and who opened it."""

    case_id: uuid.UUID
    contact_id: uuid.UUID
    trigger: str
    target: str
    level: int
    status: EscalationStatus
    priority: int
    reason: str
    created_by: str

    @property
    def decision(self) -> Decision:
        """The decision the case carries out at its level, as far as the row tells it (the group and queue are
        not stored: the target stands for the group), for the policy to climb it or repeat it at the top."""
        return Decision(self.trigger, self.target, self.level, self.target, "", self.priority, self.reason)


async def open_case(
    conn: AsyncConnection,
    *,
    contact_id: uuid.UUID,
    decision: Decision,
    reason: str,
    evidence: dict[str, Any],
    actor: str,
    now: datetime,
    precondition: CommandPrecondition | None = None,
    reopen: bool = False,
) -> uuid.UUID | None:
    """Open ``decision``'s case, unless this contact was already escalated for its trigger (then None).

    With ``reopen``, a cancelled case of the same trigger opens again instead (the policy decided it anew after
    the router refused its command). ``precondition`` is what the case's routing command assumes.
    """
    values = {
        "target": decision.target,
        "level": decision.level,
        "status": EscalationStatus.OPEN.value,
        "priority": decision.priority,
        "reason": reason,
        "evidence": json.dumps(evidence, ensure_ascii=False),
        "updated_at": now,
    }
    statement = insert(cases).values(
        id=uuid.uuid4(), contact_id=contact_id, trigger=decision.trigger, created_by=actor, created_at=now, **values
    )
    if reopen:
        cancelled = cases.c.status == EscalationStatus.CANCELLED.value
        statement = statement.on_conflict_do_update(constraint="uq_cases_contact_trigger", set_=values, where=cancelled)
    else:
        statement = statement.on_conflict_do_nothing(constraint="uq_cases_contact_trigger")
    case_id: uuid.UUID | None = (await conn.execute(statement.returning(cases.c.id))).scalar_one_or_none()
    if case_id is None:
        return None
    audit_id = await _audit(conn, case_id, actor, "open", reason, now)
    await _announce(conn, case_id, contact_id, decision, reason, now, command_of(case_id, audit_id), precondition)
    return case_id


async def climb(
    conn: AsyncConnection,
    case_id: uuid.UUID,
    decision: Decision,
    *,
    now: datetime,
    precondition: CommandPrecondition | None = None,
) -> None:
    """Climb an open case to ``decision``'s level: a new target and priority, an audit entry, and the contact moved
    again."""
    row = (await conn.execute(select(cases).where(cases.c.id == case_id))).mappings().one()
    await conn.execute(
        update(cases)
        .where(cases.c.id == case_id)
        .values(target=decision.target, level=decision.level, priority=decision.priority, updated_at=now)
    )
    reason = decision.evidence
    audit_id = await _audit(conn, case_id, "policy", "climb", reason, now)
    command_id = command_of(case_id, audit_id)
    await _announce(conn, case_id, row["contact_id"], decision, reason, now, command_id, precondition)


def command_of(case_id: uuid.UUID, audit_id: int) -> uuid.UUID:
    """The id of the routing command sent by the audit entry ``audit_id`` (an open or a climb) of a case.

    Derived, not stored: a refusal naming the command finds its case without another column.
    """
    return uuid.uuid5(case_id, f"audit/{audit_id}")


async def find_by_command(conn: AsyncConnection, contact_id: uuid.UUID, command_id: uuid.UUID) -> Case | None:
    """The case of ``contact_id`` whose open or climb sent routing command ``command_id``, locked; None if none."""
    sent = await conn.execute(
        select(case_audit.c.case_id, case_audit.c.id)
        .join(cases, cases.c.id == case_audit.c.case_id)
        .where(cases.c.contact_id == contact_id, case_audit.c.action.in_(("open", "climb")))
    )
    case_id = next((case for case, audit_id in sent if command_of(case, audit_id) == command_id), None)
    if case_id is None:
        return None
    row = (await conn.execute(select(cases).where(cases.c.id == case_id).with_for_update())).mappings().one()
    return _case(row)


async def find(conn: AsyncConnection, contact_id: uuid.UUID, trigger: str) -> Case | None:
    """The case of ``contact_id`` for ``trigger``, locked until the transaction ends; None when there is none."""
    row = (
        (
            await conn.execute(
                select(cases).where(cases.c.contact_id == contact_id, cases.c.trigger == trigger).with_for_update()
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _case(row)


async def lock_target(conn: AsyncConnection, case_id: uuid.UUID) -> str | None:
    """The case's target, its row locked until the transaction ends (a climb cannot change it meanwhile); None for
    an unknown case."""
    found = await conn.execute(select(cases.c.target).where(cases.c.id == case_id).with_for_update())
    target: str | None = found.scalar_one_or_none()
    return target


async def _announce(
    conn: AsyncConnection,
    case_id: uuid.UUID,
    contact_id: uuid.UUID,
    decision: Decision,
    reason: str,
    now: datetime,
    command_id: uuid.UUID,
    precondition: CommandPrecondition | None,
) -> None:
    command = RoutingCommand(
        command_id=command_id,
        type=RoutingCommandType.ESCALATE,
        issued_at=now,
        contact_id=contact_id,
        target_group=decision.group,
        target_queue_id=decision.queue,
        priority=decision.priority,
        target_agent_id=decision.agent,
        reason=f"{decision.trigger}: {reason}"[:1024],
        precondition=precondition,
    )
    await add(
        conn,
        outbox,
        [
            _event_row(
                case_id,
                contact_id,
                decision.trigger,
                decision.target,
                decision.level,
                EscalationStatus.OPEN,
                reason,
                now,
            ),
            outbox_row(ROUTING_COMMANDS, str(contact_id), command.model_dump_json()),
        ],
    )


async def act(
    conn: AsyncConnection, case_id: uuid.UUID, action: Action, *, actor: str, note: str, now: datetime
) -> None:
    """Acknowledge, resolve or cancel a case (``CaseClosed`` if it does not apply, ``UnknownCase``)."""
    row = (await conn.execute(select(cases).where(cases.c.id == case_id).with_for_update())).mappings().first()
    if row is None:
        raise UnknownCase(case_id)
    status = status_after(EscalationStatus(row["status"]), action)
    await conn.execute(update(cases).where(cases.c.id == case_id).values(status=status.value, updated_at=now))
    await _audit(conn, case_id, actor, action.value, note, now)
    await add(
        conn,
        outbox,
        [_event_row(case_id, row["contact_id"], row["trigger"], row["target"], row["level"], status, note, now)],
    )


def _case(row: Any) -> Case:
    """What acting needs of a ``cases`` row (the API's views of a case are ``services.escalation.queries``')."""
    return Case(
        case_id=row["id"],
        contact_id=row["contact_id"],
        trigger=row["trigger"],
        target=row["target"],
        level=row["level"],
        status=EscalationStatus(row["status"]),
        priority=row["priority"],
        reason=row["reason"],
        created_by=row["created_by"],
    )


async def _audit(conn: AsyncConnection, case_id: uuid.UUID, actor: str, action: str, detail: str, now: datetime) -> int:
    """Add an entry to the case's audit trail; its id."""
    added = await conn.execute(
        insert(case_audit)
        .values(case_id=case_id, at=now, actor=actor, action=action, detail=detail)
        .returning(case_audit.c.id)
    )
    return int(added.scalar_one())


def _event_row(
    case_id: uuid.UUID,
    contact_id: uuid.UUID,
    trigger: str,
    target: str,
    level: int,
    status: EscalationStatus,
    reason: str,
    now: datetime,
) -> dict[str, Any]:
    event = EscalationEvent(
        event_id=uuid.uuid4(),
        case_id=case_id,
        contact_id=contact_id,
        trigger=trigger,
        target=target,
        level=level,
        status=status,
        occurred_at=now,
        reason=reason[:1024],
    )
    return outbox_row(ESCALATIONS, str(contact_id), event.model_dump_json())
