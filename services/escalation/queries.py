"""The escalation service's read side: case lists, a case with its audit trail, the routing events received.

Reads never lock and never write; the commands (``services.escalation.service``) change what they show. Each answer is
a typed view, so the API's OpenAPI document shows what it returns; times are written as ``datetime.isoformat`` writes
them (``+00:00``), as the API always has.
"""

import json
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import RoutingEvent
from contracts.escalations import EscalationStatus
from services.escalation.adapters.orm import case_audit, cases, routing_events
from services.escalation.domain.cases import UnknownCase

Time = Annotated[
    datetime,
    PlainSerializer(datetime.isoformat, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class CaseSummary(BaseModel):
    """A case as the case list shows it."""

    case_id: uuid.UUID
    contact_id: uuid.UUID
    trigger: str = Field(examples=["crisis", "sla.first_response.breach", "manual.engineers"])
    target: str = Field(description="Who must act now: the target of the level the case is at.")
    level: int
    status: EscalationStatus
    priority: int
    reason: str
    evidence: dict[str, Any]
    created_by: str = Field(description="policy, or the person who escalated by hand.")
    created_at: Time
    updated_at: Time


class AuditEntry(BaseModel):
    """One change of a case: who did what, when, and why."""

    at: Time
    actor: str = Field(description="policy, router, or a person.")
    action: str = Field(examples=["open", "climb", "acknowledge", "resolve", "cancel"])
    detail: str


class CaseDetail(CaseSummary):
    """A case with its audit trail, oldest entry first."""

    audit: list[AuditEntry]


async def case(engine: AsyncEngine, case_id: uuid.UUID) -> CaseDetail:
    """A case with its audit trail (``UnknownCase``)."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(cases).where(cases.c.id == case_id))).mappings().first()
        if row is None:
            raise UnknownCase(case_id)
        trail = await conn.execute(
            select(case_audit.c.at, case_audit.c.actor, case_audit.c.action, case_audit.c.detail)
            .where(case_audit.c.case_id == case_id)
            .order_by(case_audit.c.id)
        )
        audit = [AuditEntry(at=a.at, actor=a.actor, action=a.action, detail=a.detail) for a in trail]
    return CaseDetail(**_summary(row), audit=audit)


async def case_list(
    engine: AsyncEngine,
    *,
    status: EscalationStatus | None,
    contact_id: uuid.UUID | None,
    target: str | None,
    limit: int,
    targets: Collection[str] | None = None,
) -> list[CaseSummary]:
    """Cases matching every given filter, newest first (``targets``: of one of those targets only)."""
    query = select(cases).order_by(cases.c.created_at.desc()).limit(limit)
    if status is not None:
        query = query.where(cases.c.status == status.value)
    if contact_id is not None:
        query = query.where(cases.c.contact_id == contact_id)
    if target is not None:
        query = query.where(cases.c.target == target)
    if targets is not None:
        query = query.where(cases.c.target.in_(list(targets)))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [CaseSummary(**_summary(row)) for row in rows]


async def routing_history(engine: AsyncEngine, *, contact_id: uuid.UUID | None, limit: int) -> list[RoutingEvent]:
    """Stored routing events, oldest first, optionally of one contact."""
    query = select(routing_events.c.payload).order_by(routing_events.c.occurred_at, routing_events.c.received_at)
    if contact_id is not None:
        query = query.where(routing_events.c.contact_id == contact_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.limit(limit))).scalars().all()
    return [RoutingEvent.model_validate_json(row) for row in rows]


def _summary(row: Any) -> dict[str, Any]:
    """The fields of a ``CaseSummary`` from a ``cases`` row (the evidence is stored as JSON text)."""
    return {
        "case_id": row["id"],
        "contact_id": row["contact_id"],
        "trigger": row["trigger"],
        "target": row["target"],
        "level": row["level"],
        "status": row["status"],
        "priority": row["priority"],
        "reason": row["reason"],
        "evidence": json.loads(row["evidence"]),
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
