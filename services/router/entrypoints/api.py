"""The agent desktop API: agents, presence, offers (REST and Server-Sent Events), assignments."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts import Channel
from kefu.auth import Caller, Principal, Role, Supervisor, forbidden, require_self_or_supervisor
from kefu.ops import ApiError
from services.router.adapters.feed import AgentFeed
from services.router.domain.config import AgentConfig, Shift
from services.router.domain.model import Agent, Presence
from services.router.entrypoints.deps import Service
from services.router.exceptions import UnknownAgent, UnknownAssignment
from services.router.service import RoutingService
from services.router.views import agent_view, assignment_view, offer_view

router = APIRouter(prefix="/v1")

KEEPALIVE_SECONDS = 15.0


async def _feed(request: Request) -> AgentFeed:
    feed: AgentFeed = request.app.state.router.feed
    return feed


Feed = Annotated[AgentFeed, Depends(_feed)]


class AgentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=256, examples=["王丽 Alice Wang"])
    groups: list[str] = Field(default_factory=list, examples=[["tier1"]])
    skills: dict[str, int] = Field(
        default_factory=dict, description="skill -> proficiency 1-5", examples=[{"presales": 4}]
    )
    capacity: dict[Channel, int] = Field(default_factory=dict, examples=[{"webchat": 3, "phone": 1}])
    initial_presence: Presence = Field(default=Presence.OFFLINE, description="presence of a new agent")
    phone_exclusive: bool = Field(default=False, description="a phone call excludes all other work, and vice versa")
    wrap_up_seconds: float = Field(default=0, ge=0, le=86400, description="after-contact work before the next offer")
    max_missed_offers: int | None = Field(
        default=None, ge=1, le=1000, description="set away after letting this many offers in a row expire"
    )
    shift: Shift | None = Field(
        default=None,
        description="weekly schedule: available when it starts, offline when it ends; none: presence is set by hand",
        examples=[{"time_zone": "Asia/Shanghai", "weekly": {"mon": ["09:00-18:00"]}}],
    )


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    presence: Presence = Field(
        description="The agent's new presence (wrap_up is the router's to set, after a contact).",
        examples=["available"],
    )

    @field_validator("presence")
    @classmethod
    def _not_wrap_up(cls, presence: Presence) -> Presence:
        if presence is Presence.WRAP_UP:
            raise ValueError("wrap_up follows a completed contact; set available, away or offline")
        return presence


class Completion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disposition: str | None = Field(
        default=None, max_length=128, description="What the contact was about or how it ended.", examples=["refund"]
    )
    resolved: bool | None = Field(default=None, description="Whether it was resolved (first-contact resolution).")


def _agent(service: RoutingService, agent_id: str) -> Agent:
    agent = service.state.agents.get(agent_id)
    if agent is None:
        raise UnknownAgent(f"no agent {agent_id!r}")
    return agent


@router.get("/agents", summary="All agents with their presence and load (supervisors)")
async def list_agents(service: Service, _: Supervisor) -> list[dict[str, Any]]:
    return [agent_view(agent) for agent in service.state.agents.values()]


@router.get("/agents/{agent_id}", summary="One agent (the agent itself, or a supervisor)")
async def get_agent(agent_id: str, service: Service, who: Caller) -> dict[str, Any]:
    require_self_or_supervisor(who, agent_id)
    return agent_view(_agent(service, agent_id))


@router.put("/agents/{agent_id}", summary="Create or update an agent (admins)")
async def put_agent(agent_id: str, agent: AgentBody, service: Service, who: Caller) -> dict[str, Any]:
    if who.role is not Role.ADMIN:
        raise forbidden("agents are configuration: an admin token is needed")
    try:
        config = AgentConfig.model_validate({**agent.model_dump(exclude_unset=True), "id": agent_id})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, "invalid_agent", problems) from exc
    return agent_view(await service.upsert_agent(config))


@router.put("/agents/{agent_id}/status", summary="Set an agent's presence")
async def set_status(agent_id: str, change: StatusChange, service: Service, who: Caller) -> dict[str, Any]:
    require_self_or_supervisor(who, agent_id)
    await service.set_presence(agent_id, change.presence)
    return agent_view(_agent(service, agent_id))


@router.get("/agents/{agent_id}/offers", summary="The agent's pending offers")
async def list_offers(agent_id: str, service: Service, who: Caller) -> list[dict[str, Any]]:
    require_self_or_supervisor(who, agent_id)
    _agent(service, agent_id)
    return [offer_view(o) for o in service.state.offers.values() if o.agent_id == agent_id]


@router.get("/agents/{agent_id}/assignments", summary="The agent's open assignments")
async def list_assignments(agent_id: str, service: Service, who: Caller) -> list[dict[str, Any]]:
    require_self_or_supervisor(who, agent_id)
    _agent(service, agent_id)
    return [assignment_view(a) for a in service.state.assignments.values() if a.agent_id == agent_id]


@router.get(
    "/agents/{agent_id}/events",
    summary="Server-Sent Events for the agent's desktop",
    description="Starts with the pending offers (`offer.created`), then streams `offer.created`, `offer.closed`, "
    "`assignment.created`, `assignment.message`, `assignment.closed` and `presence.changed` (wrap-up, its end, "
    "away after missed offers, a shift) as they happen.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"}},
)
async def agent_events(agent_id: str, service: Service, feed: Feed, who: Caller) -> StreamingResponse:
    require_self_or_supervisor(who, agent_id)
    _agent(service, agent_id)
    return StreamingResponse(_stream(agent_id, service, feed), media_type="text/event-stream")


async def _stream(agent_id: str, service: RoutingService, feed: AgentFeed) -> AsyncIterator[str]:
    with feed.subscribe(agent_id) as queue:
        yield "retry: 2000\n\n"
        for offer in [o for o in service.state.offers.values() if o.agent_id == agent_id]:
            yield _sse("offer.created", offer_view(offer))
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    name, payload = await queue.get()
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            yield _sse(name, payload)


def _offeree(who: Principal) -> str:
    """Offers are personal: only the agent an offer was made to may answer it."""
    if who.agent_id is None:
        raise forbidden("only the agent an offer was made to may accept or decline it")
    return who.agent_id


def _sse(name: str, payload: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


@router.post("/offers/{offer_id}/accept", summary="Accept an offer: it becomes an assignment")
async def accept_offer(offer_id: UUID, service: Service, who: Caller) -> dict[str, Any]:
    return assignment_view(await service.accept(offer_id, _offeree(who)))


@router.post("/offers/{offer_id}/decline", summary="Decline an offer: the contact goes back to its queue")
async def decline_offer(offer_id: UUID, service: Service, who: Caller) -> dict[str, str]:
    await service.decline(offer_id, _offeree(who))
    return {"offer_id": str(offer_id), "status": "declined"}


@router.get("/assignments/{assignment_id}", summary="An open assignment (its agent, or a supervisor)")
async def get_assignment(assignment_id: UUID, service: Service, who: Caller) -> dict[str, Any]:
    assignment = service.state.assignments.get(assignment_id)
    if assignment is None:
        raise UnknownAssignment(f"no open assignment {assignment_id}")
    require_self_or_supervisor(who, assignment.agent_id)
    return assignment_view(assignment)


@router.post(
    "/assignments/{assignment_id}/complete",
    summary="Complete an assignment, freeing the slot (after the agent's wrap-up), with a disposition",
)
async def complete_assignment(
    assignment_id: UUID, service: Service, who: Caller, body: Completion | None = None
) -> dict[str, str]:
    body = body or Completion()
    acting = None if who.supervises else who.agent_id
    await service.complete(assignment_id, acting, disposition=body.disposition, resolved=body.resolved)
    return {"assignment_id": str(assignment_id), "status": "completed"}
