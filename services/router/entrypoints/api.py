"""The agent desktop API: agents, presence, offers (REST and Server-Sent Events), assignments."""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sse_starlette import EventSourceResponse

from contracts import Channel
from kefu.auth import Admin, Caller, Principal, Supervisor, forbidden
from kefu.ops import ApiError
from services.router import commands, queries
from services.router.domain.config import AgentConfig, Shift
from services.router.domain.model import Presence
from services.router.entrypoints import desktop_stream
from services.router.entrypoints.deps import Service, own_agent, own_assignment
from services.router.entrypoints.responses import (
    Agent,
    Assignment,
    AssignmentCompleted,
    Offer,
    OfferDeclined,
)
from services.router.views import agent_view, assignment_view

router = APIRouter(prefix="/v1")

MAX_EVENT_ID = 2**63 - 1  # a bigint


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


@router.get("/agents", response_model=list[Agent], summary="All agents with their presence and load (supervisors)")
async def list_agents(service: Service, _: Supervisor) -> list[dict[str, Any]]:
    return await queries.agents(service)


@router.get("/agents/{agent_id}", response_model=Agent, summary="One agent (the agent itself, or a supervisor)")
async def get_agent(agent_id: str, service: Service, who: Caller) -> dict[str, Any]:
    return agent_view(own_agent(service, who, agent_id))


@router.put("/agents/{agent_id}", response_model=Agent, summary="Create or update an agent (admins)")
async def put_agent(agent_id: str, agent: AgentBody, service: Service, _: Admin) -> dict[str, Any]:
    try:
        config = AgentConfig.model_validate({**agent.model_dump(exclude_unset=True), "id": agent_id})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise ApiError(422, "invalid_agent", problems) from exc
    return agent_view(await commands.upsert_agent(service, config))


@router.put("/agents/{agent_id}/status", response_model=Agent, summary="Set an agent's presence")
async def set_status(agent_id: str, change: StatusChange, service: Service, who: Caller) -> dict[str, Any]:
    own_agent(service, who, agent_id)
    await commands.set_presence(service, agent_id, change.presence)
    return agent_view(own_agent(service, who, agent_id))


@router.get("/agents/{agent_id}/offers", response_model=list[Offer], summary="The agent's pending offers")
async def list_offers(agent_id: str, service: Service, who: Caller) -> list[dict[str, Any]]:
    own_agent(service, who, agent_id)
    return await queries.offers_of(service, agent_id)


@router.get("/agents/{agent_id}/assignments", response_model=list[Assignment], summary="The agent's open assignments")
async def list_assignments(agent_id: str, service: Service, who: Caller) -> list[dict[str, Any]]:
    own_agent(service, who, agent_id)
    return await queries.assignments_of(service, agent_id)


@router.get(
    "/agents/{agent_id}/events",
    summary="Server-Sent Events for the agent's desktop",
    description="Streams `offer.created`, `offer.closed`, `assignment.created`, `assignment.message`, "
    "`assignment.closed` and `presence.changed` (wrap-up, its end, away after missed offers, a shift) as they happen, "
    "each with an `id`. A new stream starts with the pending offers (`offer.created`). A desktop that reconnects "
    "with `Last-Event-ID` gets what it missed first; if that is no longer kept, `feed.reset` tells it to re-read "
    "its offers and assignments. A comment line is sent every `KEFU_SSE_HEARTBEAT_SECONDS`. An agent has at most "
    "`KEFU_SSE_MAX_STREAMS_PER_AGENT` streams open at once; one more gets 429 `too_many_streams`.",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"},
        429: {"description": "the agent already has as many streams open as allowed"},
    },
)
async def agent_events(
    agent_id: str,
    request: Request,
    service: Service,
    who: Caller,
    last_event_id: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID, description="the id of the last event seen")
    ] = None,
    since: Annotated[
        int | None,
        Query(alias="last_event_id", ge=0, le=MAX_EVENT_ID, description="for clients that cannot set the header"),
    ] = None,
) -> EventSourceResponse:
    own_agent(service, who, agent_id)
    running = request.app.state.router
    after = last_event_id if last_event_id is not None else since  # a browser's reconnect keeps the first URL
    stream = desktop_stream.events(agent_id, after, service=service, feed=running.feed, engine=running.engine)
    return desktop_stream.AgentStream(
        stream,
        slots=request.app.state.desktop_streams,
        agent_id=agent_id,
        ping=running.settings.sse_heartbeat_seconds,
        ping_message_factory=desktop_stream.heartbeat,
    )


def _offeree(who: Principal) -> str:
    """Offers are personal: only the agent an offer was made to may answer it."""
    if who.agent_id is None:
        raise forbidden("only the agent an offer was made to may accept or decline it")
    return who.agent_id


@router.post(
    "/offers/{offer_id}/accept", response_model=Assignment, summary="Accept an offer: it becomes an assignment"
)
async def accept_offer(offer_id: UUID, service: Service, who: Caller) -> dict[str, Any]:
    return assignment_view(await commands.accept(service, offer_id, _offeree(who)))


@router.post(
    "/offers/{offer_id}/decline",
    response_model=OfferDeclined,
    summary="Decline an offer: the contact goes back to its queue",
)
async def decline_offer(offer_id: UUID, service: Service, who: Caller) -> dict[str, str]:
    await commands.decline(service, offer_id, _offeree(who))
    return {"offer_id": str(offer_id), "status": "declined"}


@router.get(
    "/assignments/{assignment_id}",
    response_model=Assignment,
    summary="An open assignment (its agent, or a supervisor)",
)
async def get_assignment(assignment_id: UUID, service: Service, who: Caller) -> dict[str, Any]:
    return assignment_view(own_assignment(service, who, assignment_id))


@router.post(
    "/assignments/{assignment_id}/complete",
    response_model=AssignmentCompleted,
    summary="Complete an assignment, freeing the slot (after the agent's wrap-up), with a disposition",
)
async def complete_assignment(
    assignment_id: UUID, service: Service, who: Caller, body: Completion | None = None
) -> dict[str, str]:
    body = body or Completion()
    own_assignment(service, who, assignment_id)
    acting = None if who.supervises else who.agent_id
    await commands.complete(service, assignment_id, acting, disposition=body.disposition, resolved=body.resolved)
    return {"assignment_id": str(assignment_id), "status": "completed"}
