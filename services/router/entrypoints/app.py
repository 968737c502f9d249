"""The router's ASGI application."""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kefu import db, kafka
from kefu.config_file import Report
from kefu.ops import Check, error_response, install_error_handlers, ops_router
from kefu.tokens import TokenStore
from kefu.tokens import router as tokens_router
from services.router import exceptions
from services.router.bootstrap import running
from services.router.config import RouterSettings
from services.router.entrypoints import desktop_stream
from services.router.entrypoints.api import router as api_router
from services.router.entrypoints.config_api import router as config_router
from services.router.entrypoints.customers import router as customers_router
from services.router.entrypoints.moves import router as moves_router
from services.router.entrypoints.queues import router as queues_router

_STATUS = {
    exceptions.UnknownAgent: (404, "unknown_agent"),
    exceptions.UnknownOffer: (404, "unknown_offer"),
    exceptions.UnknownAssignment: (404, "unknown_assignment"),
    exceptions.UnknownContact: (404, "unknown_contact"),
    exceptions.UnknownCustomer: (404, "unknown_customer"),
    exceptions.UnknownQueue: (404, "unknown_queue"),
    exceptions.NotYours: (403, "not_yours"),
    exceptions.WrongState: (409, "wrong_state"),
}


def create_app(settings: RouterSettings, checked: Report) -> FastAPI:
    """Build the router app for the ``checked`` configuration (``tools.compose`` checks it); resources start in its
    lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings, checked) as router:
            app.state.router = router
            app.state.tokens = router.tokens
            app.state.token_store = TokenStore(router.engine)
            yield

    app = FastAPI(title="kefu router", version="0.1.0", lifespan=lifespan)
    app.state.desktop_streams = desktop_stream.StreamSlots(settings.sse_max_streams_per_agent)
    install_error_handlers(app)

    @app.exception_handler(exceptions.RoutingError)
    async def routing_error(_: Request, exc: exceptions.RoutingError) -> JSONResponse:
        status, code = _STATUS.get(type(exc), (400, "routing_error"))
        return error_response(status, code, str(exc))

    def checks() -> Mapping[str, Check]:
        router = app.state.router
        return {
            "database": partial(db.ping, router.engine),
            "broker": partial(kafka.broker_reachable, router.producer),
        }

    app.include_router(ops_router(checks))
    app.include_router(tokens_router)
    app.include_router(api_router)
    app.include_router(customers_router)
    app.include_router(queues_router)
    app.include_router(config_router)
    app.include_router(moves_router)
    return app
