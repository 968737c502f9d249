"""Escalation cases over HTTP: manual escalation from an agent desktop, the case list, a case, and acknowledge /
resolve / cancel. Commands go through the service's handlers (``Escalation.service``), reads through
``services.escalation.queries``; what stays here is HTTP: bodies, who may ask, and the answers' types. A refusal of
the domain (an unknown target or case, a contact escalated already, a closed case) is answered as its error class
declares (``kefu.errors``)."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from contracts.escalations import EscalationStatus
from kefu.auth import Caller, Principal, require_case_cancel, require_case_member, require_holder
from kefu.ops import ApiError
from services.escalation import queries
from services.escalation.bootstrap import Escalation
from services.escalation.domain.cases import Action, UnknownCase
from services.escalation.queries import CaseDetail, CaseSummary

router = APIRouter(prefix="/v1", tags=["escalations"])


class ManualEscalation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_id: uuid.UUID = Field(description="The contact to escalate.")
    target: str = Field(
        max_length=64,
        description="Who must take over: a target the policy allows by hand (its manual trigger's allowed_targets, "
        "else any declared target); an unknown one gets a 422 naming the allowed ones.",
        examples=["engineers"],
    )
    reason: str = Field(min_length=1, max_length=1024, examples=["客户设备反复报错 E4，一线无法解决"])
    evidence: dict[str, Any] = Field(default_factory=dict, description="Anything that shows why (message ids…).")
    priority: int | None = Field(default=None, ge=0, le=1000, description="The target's priority when absent.")


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=1024, description="Goes into the audit trail.")


def _escalation(request: Request) -> Escalation:
    escalation: Escalation = request.app.state.escalation
    return escalation


@router.post(
    "/escalations",
    status_code=201,
    summary="Escalate a contact by hand (supervisors, and the agent the contact is assigned to)",
)
async def escalate(body: ManualEscalation, request: Request, who: Caller) -> CaseDetail:
    escalation = _escalation(request)
    unknown = ApiError(404, "unknown_contact", f"no contact {body.contact_id} assigned to you")

    def holds(holder: str | None) -> None:
        require_holder(who, holder, unknown)

    case_id = await escalation.service.escalate_by_hand(
        contact_id=body.contact_id,
        target=body.target,
        reason=body.reason,
        evidence=body.evidence,
        priority=body.priority,
        actor=who.name,
        holder_check=None if who.supervises else holds,
    )
    return await queries.case(escalation.engine, case_id)


@router.get("/escalations", summary="Escalation cases, newest first (an agent's: those of its groups' targets)")
async def list_cases(
    request: Request,
    who: Caller,
    status: EscalationStatus | None = None,
    contact_id: uuid.UUID | None = None,
    target: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CaseSummary]:
    escalation = _escalation(request)
    mine = None if who.supervises or who.agent_id is None else escalation.access.targets_of(who.agent_id)
    return await queries.case_list(
        escalation.engine, status=status, contact_id=contact_id, target=target, limit=limit, targets=mine
    )


@router.get("/escalations/{case_id}", summary="A case with its audit trail (supervisors, its target's members)")
async def get_case(case_id: uuid.UUID, request: Request, who: Caller) -> CaseDetail:
    escalation = _escalation(request)
    found = await queries.case(escalation.engine, case_id)
    _require_member(escalation, who, case_id, found.target)
    return found


@router.post(
    "/escalations/{case_id}/{action}",
    summary="Acknowledge or resolve a case (its target's members, supervisors), or cancel it (supervisors)",
)
async def act(
    case_id: uuid.UUID, action: Action, request: Request, who: Caller, body: Note | None = None
) -> CaseDetail:
    escalation = _escalation(request)

    def may_act(target: str | None) -> None:
        _require_member(escalation, who, case_id, target)
        if action is Action.CANCEL:
            require_case_cancel(who)

    note = body.note if body else ""
    await escalation.service.act_on_case(case_id, action, actor=who.name, note=note, check=may_act)
    return await queries.case(escalation.engine, case_id)


def _require_member(escalation: Escalation, who: Principal, case_id: uuid.UUID, target: str | None) -> None:
    """404 for a case that does not exist, and (the same answer) for one an agent is no member of the target of."""
    if target is None:
        raise UnknownCase(case_id)
    require_case_member(who, escalation.access.members(target), UnknownCase(case_id))
