"""The one skeleton of every service's HTTP app, so that the three answer alike where they should: the same JSON
errors (``kefu.ops``, every ``kefu.errors.ServiceError`` as it declares), one access line per request, ``/healthz``,
``/readyz`` and ``/metrics``, and the same ``app.state``.

A service brings what is its own: the resources it runs on (an async context manager yielding the running
service: its bootstrap's ``running``), what readiness checks of them, and its routers. The running service is
``app.state.<name>`` while the app serves; a service that authenticates callers also gives its ``kefu.tokens.Tokens``,
which puts the registry (``kefu.auth``) and the token store on ``app.state`` and serves the admin API ``/v1/tokens``.
"""

import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from kefu import db, kafka
from kefu.ops import Check, install_error_handlers, ops_router
from kefu.tokens import Tokens
from kefu.tokens import router as tokens_router

S = TypeVar("S")

VERSION = "0.1.0"

# FastAPI's OpenTelemetry instrumentation looks up the global tracer, meter and logger providers on every request,
# to see whether an SDK configured one; the services install no OpenTelemetry SDK (only the API, which FastAPI
# depends on), so none ever is: about 3 % of a small request's CPU spent finding that out (bench/http_stack.py)
NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters  # FastAPI 0.165 and later
    else {}
)


def service_app(
    title: str,
    running: Callable[[], AbstractAsyncContextManager[S]],
    *,
    name: str,
    checks: Callable[[S], Mapping[str, Check]],
    routers: Iterable[APIRouter],
    tokens: Callable[[S], Tokens] | None = None,
    refused: Counter | None = None,
) -> FastAPI:
    """The app of a service: ``running()`` enters in its lifespan (the service is ``app.state.<name>``), ``checks``
    of it answer ``/readyz``, then the tokens API if ``tokens`` is given, then ``routers`` in order; ``refused``
    counts the service's errors answered, by code (``kefu.ops.install_error_handlers``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running() as service:
            setattr(app.state, name, service)
            if tokens is not None:
                issued = tokens(service)
                app.state.tokens = issued.registry  # read by kefu.auth.caller
                app.state.token_store = issued.store  # read by the /v1/tokens routes
            yield

    app = FastAPI(title=title, version=VERSION, lifespan=lifespan, **NO_TELEMETRY)
    install_error_handlers(app, refused=refused)
    app.include_router(ops_router(lambda: checks(getattr(app.state, name))))
    if tokens is not None:
        app.include_router(tokens_router)
    for router in routers:
        app.include_router(router)
    return app


def database_and_broker(engine: AsyncEngine, producer: AIOKafkaProducer) -> dict[str, Check]:
    """The readiness of a service that keeps its state in PostgreSQL and publishes to the broker."""
    return {"database": partial(db.ping, engine), "broker": partial(kafka.broker_reachable, producer)}
