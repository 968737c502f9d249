"""The router's ASGI application: the service's skeleton (``kefu.app``) around the router's resources, with the
desktop and supervisor API; its domain errors answer as they declare (``services.router.exceptions``)."""

from functools import partial

from fastapi import FastAPI

from kefu import fastpath
from kefu.app import database_and_broker, service_app
from kefu.config_file import Report
from services.router.bootstrap import running
from services.router.config import RouterSettings
from services.router.entrypoints import desktop_stream
from services.router.entrypoints.api import router as api_router
from services.router.entrypoints.config_api import router as config_router
from services.router.entrypoints.customers import router as customers_router
from services.router.entrypoints.moves import router as moves_router
from services.router.entrypoints.queues import router as queues_router


def create_app(settings: RouterSettings, checked: Report) -> FastAPI:
    """Build the router app for the ``checked`` configuration (``tools.assemble`` checks it); resources start in its
    lifespan."""
    app = service_app(
        "kefu router",
        partial(running, settings, checked),
        name="router",
        checks=lambda router: database_and_broker(router.engine, router.producer),
        routers=[api_router, customers_router, queues_router, config_router, moves_router],
        tokens=lambda router: router.tokens,
    )
    app.state.desktop_streams = desktop_stream.StreamSlots(settings.sse_max_streams_per_agent)
    serve_desktop_plainly(app)
    return app


def serve_desktop_plainly(app: FastAPI) -> None:
    """The desktop API's calls (accept, decline, complete, presence…), the router's busiest, served past FastAPI's
    parameter solving (``kefu.fastpath``): same answers, about half the HTTP stack's CPU."""
    fastpath.install(app, [api_router])
