"""Moving contacts: an agent transfers its assignment; a supervisor moves any contact to another queue."""

from typing import Any, Self
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kefu.auth import Caller, Supervisor
from services.router import commands
from services.router.commands import TransferTarget
from services.router.domain.model import ContactRef
from services.router.entrypoints.deps import Service, own_assignment
from services.router.entrypoints.responses import Placement

router = APIRouter(prefix="/v1")


class Transfer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queue_id: str | None = Field(
        default=None, max_length=128, description="The queue to transfer to; the current one when absent."
    )
    agent_id: str | None = Field(
        default=None, max_length=128, description="An agent to transfer to: the contact waits for them first."
    )
    wait_seconds: float = Field(
        default=120, gt=0, le=3600, description="How long a contact transferred to an agent waits for that agent."
    )
    reason: str | None = Field(default=None, max_length=1024, examples=["needs a refund approval"])

    @model_validator(mode="after")
    def _somewhere(self) -> Self:
        if self.queue_id is None and self.agent_id is None:
            raise ValueError("give queue_id, agent_id or both")
        return self


class Move(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queue_id: str = Field(min_length=1, max_length=128, description="The queue to move the contact to.")
    priority: int | None = Field(default=None, ge=-1000, le=1000, description="A new priority, if it changes.")
    reason: str = Field(min_length=1, max_length=1024, examples=["VIP waiting too long"])


def _placed(ref: ContactRef) -> dict[str, Any]:
    return {
        "contact_id": str(ref.id),
        "queue_id": ref.queue_id,
        "priority": ref.priority,
        "preferred_agent": ref.preferred_agent,
        "prefer_until": ref.prefer_until.isoformat() if ref.prefer_until else None,
    }


@router.post(
    "/assignments/{assignment_id}/transfer",
    response_model=Placement,
    summary="Transfer an assignment to a queue or an agent (its agent, or a supervisor); the history stays",
)
async def transfer_assignment(assignment_id: UUID, body: Transfer, service: Service, who: Caller) -> dict[str, Any]:
    own_assignment(service, who, assignment_id)
    target = TransferTarget(body.queue_id, body.agent_id, body.wait_seconds, None, body.reason)
    ref = await commands.transfer(service, assignment_id, None if who.supervises else who.agent_id, target)
    return _placed(ref)


@router.post(
    "/contacts/{contact_id}/move",
    response_model=Placement,
    summary="Move a waiting or assigned contact to a queue (supervisors)",
)
async def move_contact(contact_id: UUID, body: Move, service: Service, _: Supervisor) -> dict[str, Any]:
    return _placed(await commands.move(service, contact_id, body.queue_id, body.reason, body.priority))
