"""The channel adapters' ASGI application."""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from kefu import db
from kefu.ops import Check, error_response, install_error_handlers, ops_router
from services.channels.accounts import ChannelsConfig
from services.channels.bootstrap import running
from services.channels.common import fastpath
from services.channels.common.rate_limit import WebhookRateLimit
from services.channels.config import ChannelsSettings
from services.channels.exceptions import BrokerUnavailable, WebhookRejected
from services.channels.platforms import PLATFORMS

REJECTED = Counter("kefu_channels_rejected_total", "Webhooks refused", ["reason"])


def create_app(settings: ChannelsSettings, config: ChannelsConfig) -> FastAPI:
    """Build the channels app for the checked ``config`` (``tools.compose`` checks it); the publisher starts in its
    lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings, config) as channels:
            app.state.channels = channels
            yield

    app = FastAPI(title="kefu channels", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(WebhookRateLimit, rate=settings.webhook_rate_limit)

    @app.exception_handler(WebhookRejected)
    async def rejected(_: Request, exc: WebhookRejected) -> JSONResponse:
        REJECTED.labels(exc.code).inc()
        return error_response(exc.status, exc.code, exc.detail)

    @app.exception_handler(BrokerUnavailable)
    async def broker_down(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        REJECTED.labels("broker_unavailable").inc()
        response = error_response(503, "broker_unavailable", f"{exc}; retry later")
        response.headers["Retry-After"] = "5"
        return response

    def checks() -> Mapping[str, Check]:
        channels = app.state.channels
        return {"database": partial(db.ping, channels.engine), "broker": channels.publisher.reachable}

    app.include_router(ops_router(checks))
    routers = [platform.router for platform in PLATFORMS]
    for router in routers:
        app.include_router(router)
    fastpath.install(app, routers)
    return app
