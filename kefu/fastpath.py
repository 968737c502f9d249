"""Serve FastAPI routes past FastAPI's per-request parameter solving, answering as FastAPI would.

FastAPI keeps documenting every route (the OpenAPI document is unchanged); a plain Starlette route with the same
path and methods, put in front, serves the request instead. It resolves what the endpoint takes in plain code: the
path parameters and the JSON body validated by the route's own fields, the caller by ``kefu.auth.authenticated``
(``kefu.auth.PLAIN``), a dependency that takes only the request (the channels' ``channels_of``) by calling it; then
it calls the same endpoint. A ``Response`` the endpoint builds (a webhook's 202, TwiML, a WeChat ``success``) is
the answer as it is; anything else is serialized as FastAPI's request handler does: with the route's response
field and status code, into JSON bytes directly or through the route's response class. On the router's desktop
calls, FastAPI's solving, its bearer scheme and its request handler cost about as much CPU as the endpoint itself
(``make bench-http-stack``); on a webhook, more than verifying, normalizing and publishing (``make bench-channels``).

Whatever is not the usual case goes to FastAPI's own handler with the body already read: a body that is not JSON
or does not decode, a path parameter or body that does not validate, dependency overrides. Errors therefore answer
exactly as before: a JSON decode error before authentication, the 422 body with its fields after it. A route
qualifies when all it takes is path parameters, one JSON body, the request, and dependencies that are either in
``kefu.auth.PLAIN`` or take only the request; its endpoint is a coroutine function and its response class does not
stream server-sent events.
"""

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable
from copy import deepcopy
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter, _extract_endpoint_context, serialize_response
from fastapi.sse import EventSourceResponse
from fastapi.utils import is_body_allowed_for_status_code
from pydantic_core import PydanticUndefined
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from kefu.auth import PLAIN

Resolver = Callable[[Request], Awaitable[Any]]


class _Unusual(Exception):
    """The request is not the usual case: FastAPI's own handler answers it."""


def install(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Put a plain route in front of everything else ``app`` serves for each qualifying route of ``routers``."""
    app.router.routes[:0] = [
        _plain(route)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        if _qualifies(route)
    ]


def _resolver(dependency: Dependant) -> Resolver | None:
    plain = PLAIN.get(dependency.call) if dependency.call is not None else None
    if plain is not None:
        return plain
    takes_only_request = dependency.request_param_name is not None and not (
        dependency.path_params
        or dependency.query_params
        or dependency.header_params
        or dependency.cookie_params
        or dependency.body_params
        or dependency.dependencies
    )
    return dependency.call if takes_only_request and _is_async(dependency) else None


def _is_async(dependency: Dependant) -> bool:
    return inspect.iscoroutinefunction(dependency.call)


def _qualifies(route: APIRoute) -> bool:
    dependant = route.dependant
    return (
        inspect.iscoroutinefunction(route.endpoint)
        and not issubclass(_response_class(route), EventSourceResponse)
        and route.max_body_size is None
        and not (dependant.query_params or dependant.header_params or dependant.cookie_params)
        and (route.body_field is None or (len(dependant.body_params) == 1 and not route._embed_body_fields))
        and not (dependant.response_param_name or dependant.background_tasks_param_name)
        and not (dependant.websocket_param_name or dependant.http_connection_param_name)
        and not dependant.security_scopes_param_name
        and all(d.name is not None and _resolver(d) is not None for d in dependant.dependencies)
    )


class _PlainEndpoint:
    """The ASGI app of a plain route: ``route``'s endpoint with its arguments resolved in plain code."""

    def __init__(self, route: APIRoute) -> None:
        self.route = route
        dependant = route.dependant
        self.resolvers = {d.name or "": r for d in dependant.dependencies if (r := _resolver(d)) is not None}
        self.request_name = dependant.request_param_name
        self.endpoint_ctx = _extract_endpoint_context(route.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        body = await _body(request) if self.route.body_field is not None else b""
        try:
            response = await self._respond(request, body)
        except _Unusual:
            await self.route.app(scope, _replaying(body, receive) if self.route.body_field else receive, send)
            return
        await response(scope, receive, send)

    async def _respond(self, request: Request, body: bytes) -> Response:
        if request.app.dependency_overrides:
            raise _Unusual
        route = self.route
        document = _json(request, body) if route.body_field is not None else PydanticUndefined
        values: dict[str, Any] = {}
        for name, resolve in self.resolvers.items():
            values[name] = await resolve(request)
        if self.request_name is not None:
            values[self.request_name] = request
        for field in route.dependant.path_params:
            values[field.name] = _valid(field, request.path_params.get(field.alias), ("path", field.alias))
        if route.body_field is not None:
            values[route.body_field.name] = _body_value(route.body_field, document)
        answer = await route.endpoint(**values)
        if isinstance(answer, Response):
            return answer
        return await self._serialized(answer)

    async def _serialized(self, answer: Any) -> Response:
        """``answer`` as FastAPI's request handler answers what is not a ``Response``."""
        route = self.route
        dump_json = route.response_field is not None and isinstance(route.response_class, DefaultPlaceholder)
        content = await serialize_response(
            field=route.response_field,
            response_content=answer,
            include=route.response_model_include,
            exclude=route.response_model_exclude,
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
            endpoint_ctx=self.endpoint_ctx,
            dump_json=dump_json,
        )
        status: dict[str, Any] = {"status_code": route.status_code} if route.status_code else {}
        if dump_json:
            response = Response(content, media_type="application/json", **status)
        else:
            response = _response_class(route)(content, **status)
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        return response


def _response_class(route: APIRoute) -> type[Response]:
    kind = route.response_class
    return kind.value if isinstance(kind, DefaultPlaceholder) else kind


def _plain(route: APIRoute) -> Route:
    methods = set(route.methods or ())
    plain = Route(route.path, _PlainEndpoint(route), methods=sorted(methods), name=route.name)
    plain.methods = methods  # as FastAPI's route: no HEAD added to a GET
    return plain


async def _body(request: Request) -> bytes:
    try:
        return await request.body()
    except Exception as exc:  # as FastAPI answers a body it cannot read
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc


def _json(request: Request, body: bytes) -> Any:
    if not body:
        return PydanticUndefined
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
        raise _Unusual
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _Unusual from exc


def _valid(field: Any, value: Any, loc: tuple[str, ...]) -> Any:
    valid, errors = field.validate(value, {}, loc=loc)
    if errors:
        raise _Unusual
    return valid


def _body_value(field: Any, document: Any) -> Any:
    if document is PydanticUndefined:
        if field.field_info.is_required():
            raise _Unusual
        if not field.field_info.validate_default:
            return deepcopy(field.default)
        document = deepcopy(field.default)
    return _valid(field, document, ("body",))


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first gives back the body already read."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
