"""The escalation service's ASGI application."""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated
from uuid import UUID

from fastapi import FastAPI, Query, Request

from contracts import RoutingEvent
from kefu import db, kafka
from kefu.auth import Supervisor
from kefu.config_file import Report
from kefu.ops import Check, install_error_handlers, ops_router
from kefu.tokens import TokenStore
from kefu.tokens import router as tokens_router
from services.escalation.bootstrap import Escalation, running
from services.escalation.config import EscalationSettings
from services.escalation.entrypoints.cases import router as cases_router
from services.escalation.queries import routing_history


def create_app(settings: EscalationSettings, checked: Report, groups: Mapping[str, frozenset[str]]) -> FastAPI:
    """Build the escalation app for the ``checked`` configuration and the router's ``groups`` (``tools.compose``
    checks and reads them); its consumers start in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings, checked, groups) as escalation:
            app.state.escalation = escalation
            app.state.tokens = escalation.tokens
            app.state.token_store = TokenStore(escalation.engine)
            yield

    app = FastAPI(title="kefu escalation", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)

    def checks() -> Mapping[str, Check]:
        escalation: Escalation = app.state.escalation
        return {
            "database": partial(db.ping, escalation.engine),
            "broker": partial(kafka.broker_reachable, escalation.producer),
        }

    app.include_router(ops_router(checks))
    app.include_router(tokens_router)
    app.include_router(cases_router)

    @app.get("/v1/routing-events", summary="Routing events received, oldest first (supervisors)")
    async def list_routing_events(
        request: Request,
        _: Supervisor,
        contact_id: UUID | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[RoutingEvent]:
        escalation: Escalation = request.app.state.escalation
        return await routing_history(escalation.engine, contact_id=contact_id, limit=limit)

    return app
