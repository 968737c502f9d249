"""Serve webhook endpoints without FastAPI's per-request parameter solving.

FastAPI keeps documenting every webhook (OpenAPI, path parameters); requests, though, are served by
a plain Starlette route placed in front, which calls the same endpoint function with its path
parameters, the ``Request`` and the running ``Channels``. On the webhook hot path FastAPI's
dependency solving and nested-router matching cost more than verifying, normalizing and publishing
together (``make bench-channels``: webchat from 0.61 to 0.81 of a bare HMAC-and-send endpoint).
Only endpoints whose parameters are all path parameters, ``request`` and ``channels`` qualify; any
other endpoint stays with FastAPI.
"""

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute, APIRouter
from starlette.responses import Response
from starlette.routing import Route

Endpoint = Callable[..., Awaitable[Response]]


def fast_routes(routers: Iterable[APIRouter]) -> list[Route]:
    """A Starlette route for every qualifying endpoint of ``routers``."""
    routes = []
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and _qualifies(route):
                routes.append(Route(route.path, _call(route.endpoint), methods=sorted(route.methods or ())))
    return routes


def install(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Put the fast routes in front of everything else ``app`` serves."""
    app.router.routes[:0] = fast_routes(routers)


def _qualifies(route: APIRoute) -> bool:
    path_params = set(route.param_convertors)
    names = set(inspect.signature(route.endpoint).parameters)
    return "request" in names and names <= path_params | {"request", "channels"} and bool(path_params)


def _call(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    wants_channels = "channels" in inspect.signature(endpoint).parameters

    async def serve(request: Request) -> Response:
        extra: dict[str, Any] = {"channels": request.app.state.channels} if wants_channels else {}
        return await endpoint(request=request, **request.path_params, **extra)

    serve.__name__ = getattr(endpoint, "__name__", "webhook")
    return serve
