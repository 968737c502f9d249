"""The router's running objects as FastAPI dependencies (async: sync ones would run in a thread pool), and the
lookups that apply ``kefu.auth``'s rules to an agent's own things."""

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from kefu.auth import Principal, require_self
from services.router import queries
from services.router.domain.model import Agent, Assignment
from services.router.exceptions import UnknownAgent, UnknownAssignment
from services.router.service import RoutingService


async def _service(request: Request) -> RoutingService:
    service: RoutingService = request.app.state.router.service
    return service


Service = Annotated[RoutingService, Depends(_service)]


def own_agent(service: RoutingService, who: Principal, agent_id: str) -> Agent:
    """The agent ``agent_id``, if the caller is that agent or supervises; another agent looks unknown (404)."""
    unknown = UnknownAgent(f"no agent {agent_id!r}")
    require_self(who, agent_id, unknown)
    agent = queries.agent(service, agent_id)
    if agent is None:
        raise unknown
    return agent


def own_assignment(service: RoutingService, who: Principal, assignment_id: UUID) -> Assignment:
    """The open assignment, if the caller is its agent or supervises; another's looks unknown (404)."""
    unknown = UnknownAssignment(f"no open assignment {assignment_id}")
    assignment = queries.assignment(service, assignment_id)
    if assignment is None:
        raise unknown
    require_self(who, assignment.agent_id, unknown)
    return assignment
