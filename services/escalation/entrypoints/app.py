"""The escalation service's ASGI application: the service's skeleton (``kefu.app``) around its resources, with the
case API and the routing history; its domain errors answer as they declare (``services.escalation.exceptions``)."""

from collections.abc import Mapping
from functools import partial
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, FastAPI, Query, Request

from contracts import RoutingEvent
from kefu.app import database_and_broker, service_app
from kefu.auth import Supervisor
from kefu.config_file import Report
from services.escalation.bootstrap import Escalation, running
from services.escalation.config import EscalationSettings
from services.escalation.entrypoints.cases import router as cases_router
from services.escalation.queries import routing_history

history_router = APIRouter()


@history_router.get("/v1/routing-events", summary="Routing events received, oldest first (supervisors)")
async def list_routing_events(
    request: Request,
    _: Supervisor,
    contact_id: UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RoutingEvent]:
    escalation: Escalation = request.app.state.escalation
    return await routing_history(escalation.engine, contact_id=contact_id, limit=limit)


def create_app(settings: EscalationSettings, checked: Report, groups: Mapping[str, frozenset[str]]) -> FastAPI:
    """Build the escalation app for the ``checked`` configuration and the router's ``groups`` (``tools.assemble``
    checks and reads them); its consumers start in the lifespan."""
    return service_app(
        "kefu escalation",
        partial(running, settings, checked, groups),
        name="escalation",
        checks=lambda escalation: database_and_broker(escalation.engine, escalation.producer),
        routers=[cases_router, history_router],
        tokens=lambda escalation: escalation.tokens,
    )
