"""What every service exposes to operators and callers alike: health, readiness, metrics and
JSON errors.

Errors a caller can act on (``kefu.errors.ServiceError``: each declares its status and code) are
``{"error": code, "detail": text}`` with a 4xx; validation errors
add ``"fields"`` naming each offending location. Nothing unexpected leaks a stack trace. When the
database or the broker cannot be reached (``kefu.outage``), every route answers 503
``database_unavailable`` / ``broker_unavailable`` with ``Retry-After``, and nothing is logged per request:
the outage is logged once when it begins and once when it ends.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from kefu.access import AccessLog
from kefu.errors import ServiceError
from kefu.outage import unavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
"""What a 503 asks the caller to wait before trying again."""

Check = Callable[[], Awaitable[None]]


class ApiError(ServiceError):
    """A ``ServiceError`` whose status and code are chosen where it is raised: the kit's own refusals (a token, a
    role) and an endpoint's checks of a request, which belong to no domain error class."""

    def __init__(self, status: int, error: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = error
        self.headers = headers or {}


class Health(BaseModel):
    """The process answers: alive, whatever its dependencies say (a liveness probe restarts it otherwise)."""

    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    """Whether the service can do its work now, and which dependency it waits for (a load balancer holds traffic
    back until it is ready)."""

    ready: bool = Field(description="Every check passed; the answer is then a 200, else a 503.")
    checks: dict[str, str] = Field(
        description="Each dependency: ok, or why not.",
        examples=[{"database": "ok", "broker": "unavailable: KafkaError"}],
    )


def error_response(status: int, error: str, detail: str, **extra: object) -> JSONResponse:
    """Render the project's JSON error body; a 503 says when to retry (``Retry-After``)."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status, headers=headers)


def ops_router(checks: Callable[[], Mapping[str, Check]]) -> APIRouter:
    """Return ``/healthz``, ``/readyz`` and ``/metrics``; ``checks`` names what readiness needs."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get(
        "/readyz",
        summary="Database and broker are reachable",
        responses={503: {"model": Readiness, "description": "A dependency cannot be reached"}},
    )
    async def readyz(response: Response) -> Readiness:
        named = checks()
        results = await asyncio.gather(*(check() for check in named.values()), return_exceptions=True)
        status = {
            name: "ok" if not isinstance(result, BaseException) else f"unavailable: {type(result).__name__}"
            for name, result in zip(named, results, strict=True)
        }
        ready = all(value == "ok" for value in status.values())
        response.status_code = 200 if ready else 503
        return Readiness(ready=ready, checks=status)

    @router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def install_error_handlers(app: FastAPI, *, refused: Counter | None = None) -> None:
    """Render every error as the project's JSON body; never a stack trace. Log one access line per request.

    ``refused``, when given, counts every ``ServiceError`` answered, labelled by its code (the channels count the
    webhooks they refuse, and why)."""
    app.add_middleware(AccessLog)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        if refused is not None:
            refused.labels(exc.code).inc()
        response = error_response(exc.status, exc.code, exc.detail)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": err.get("msg", ""),
                "type": err.get("type"),
            }
            for err in exc.errors()
        ]
        return error_response(422, "invalid_request", "the request does not match the API", fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, _code(exc.status_code), str(exc.detail))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> JSONResponse:
        # the caller hung up mid-body: nothing was published, and nobody is left to read an answer
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return error_response(400, "client_disconnected", "the request body was not received in full")

    async def dependency_error(request: Request, exc: Exception) -> JSONResponse:
        # registered for the database's and the broker's exception trees: answered here, not re-raised to the server
        dependency = unavailable(exc)
        if dependency is None:
            return await unexpected(request, exc)
        return error_response(503, f"{dependency}_unavailable", f"the {dependency} cannot be reached now; retry later")

    for tree in (SQLAlchemyError, KafkaError):
        app.add_exception_handler(tree, dependency_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")


def _code(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(status, "http_error")
