"""Routes served past FastAPI's parameter solving (``kefu.fastpath``) answer exactly as FastAPI answers them: the
same statuses, headers and bodies for every request, usual or not, the same OpenAPI document, the same access line;
and the plain route is the one that serves. Two kinds of route: the desktop API's (a caller, a JSON body, a response
model) and the channels' webhooks' (the request, a dependency of the request only, a ``Response`` of their own)."""

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any
from uuid import UUID

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from kefu import fastpath
from kefu.app import service_app
from kefu.auth import AuthConfig, Caller, Supervisor, TokenConfig, TokenRegistry
from kefu.ops import ApiError
from tests.logcapture import lines, service_logs

AGENT, SUPERVISOR = "agent-token-0123456789abcdef", "supervisor-token-0123456789abcdef"
THING = "0b7c2f4e-8d1a-4c3b-9e5f-6a7b8c9d0e1f"


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(default="", max_length=8)
    done: bool | None = None


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thing_id: UUID
    by: str
    note: str | None


async def _store(request: Request) -> dict[str, str]:
    store: dict[str, str] = request.app.state.store
    return store


Store = Annotated[dict[str, str], Depends(_store)]


def _router() -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/things/{thing_id}/note", response_model=Answer)
    async def note(thing_id: UUID, who: Caller, body: Note | None = None) -> dict[str, Any]:
        if body is not None and body.text == "gone":
            raise ApiError(409, "wrong_state", f"thing {thing_id} is gone")
        return {"thing_id": str(thing_id), "by": who.agent_id or who.name, "note": body.text if body else None}

    @router.put("/things/{thing_id}", response_model=Answer)
    async def put(thing_id: UUID, change: Note, store: Store, _: Supervisor) -> dict[str, Any]:
        store[str(thing_id)] = change.text
        return {"thing_id": thing_id, "by": "supervisor", "note": change.text}

    @router.get("/agents/{agent_id}", response_model=Answer)
    async def broken(agent_id: str, who: Caller) -> dict[str, Any]:
        return {"thing_id": THING, "by": agent_id, "note": None, "extra": who.name}  # strays from its schema

    return router


def _webhooks() -> APIRouter:
    """Shaped as the channels' webhooks (``services.channels``): each reads the request itself."""
    router = APIRouter(prefix="/webhooks", tags=["webhooks"])

    @router.post("/site/{site_id}", status_code=202, response_model=Answer, responses={404: {"description": "no"}})
    async def webhook(site_id: str, request: Request, store: Store) -> JSONResponse:
        if site_id not in store:
            raise ApiError(404, "unknown_account", f"no site {site_id!r}")
        text = (await request.body()).decode()
        return JSONResponse({"thing_id": THING, "by": site_id, "note": text or None}, status_code=202)

    @router.get("/site/{site_id}", response_class=PlainTextResponse)
    async def url_check(site_id: str, request: Request, store: Store) -> PlainTextResponse:
        return PlainTextResponse(f"{site_id}:{request.query_params.get('echostr', '')}:{site_id in store}")

    @router.post("/site/{site_id}/status", status_code=204, response_class=Response)
    async def status(site_id: str, request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    @router.post("/site/{site_id}/ack", status_code=202, response_model=Answer)
    async def ack(site_id: str, store: Store) -> dict[str, Any]:  # serialized with the route's status code
        return {"thing_id": THING, "by": site_id, "note": store.get(site_id)}

    @router.post("/site/{site_id}/text", response_class=PlainTextResponse)
    async def text(site_id: str) -> str:  # through the route's response class
        return f"ok {site_id}"

    @router.post("/site/{site_id}/gone", status_code=204, response_model=None)
    async def gone(site_id: str) -> dict[str, str]:  # a body the status does not allow is dropped
        return {"site": site_id}

    return router


def _app(plain: bool) -> FastAPI:
    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        yield None

    routers = [_router(), _webhooks()]
    app = service_app("fastpath", running, name="fastpath", checks=lambda _: {}, routers=routers)
    tokens = [
        TokenConfig.model_validate({"token": AGENT, "role": "agent", "agent_id": "alice"}),
        TokenConfig.model_validate({"token": SUPERVISOR, "role": "supervisor"}),
    ]
    app.state.tokens = TokenRegistry(AuthConfig(tokens=tokens))
    app.state.store = {"site-1": "hello"}
    if plain:
        fastpath.install(app, routers)
    return app


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


JSON = {"content-type": "application/json"}
REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT), b""),
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT) | JSON, b'{"text":"hi","done":true}'),
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT) | JSON, b"null"),
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT) | {"content-type": "application/json; charset=utf-8"}, b"{}"),
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT) | JSON, b'{"text":"gone"}'),  # the endpoint's own error
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT) | JSON, b'{"text":"far too long"}'),
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT) | JSON, b'{"text":'),  # does not decode
    ("POST", f"/v1/things/{THING}/note", JSON, b'{"text":'),  # a decode error comes before authentication
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT) | JSON, b"\xff\xfe"),
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT), b'{"text":"hi"}'),  # no content type
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT) | {"content-type": "text/plain"}, b"hi"),
    ("POST", f"/v1/things/{THING}/note", _bearer(AGENT) | {"content-type": "application/merge+json"}, b"{}"),
    ("POST", "/v1/things/not-a-uuid/note", _bearer(AGENT) | JSON, b'{"text":"far too long"}'),
    ("POST", "/v1/things/not-a-uuid/note", {}, b""),  # authentication before the path's validation
    ("POST", f"/v1/things/{THING}/note", {"authorization": "Bearer unknown-token-0123456789"}, b""),
    ("GET", f"/v1/things/{THING}/note", _bearer(AGENT), b""),  # 405, with Allow
    ("PUT", f"/v1/things/{THING}", _bearer(SUPERVISOR) | JSON, b'{"text":"set"}'),
    ("PUT", f"/v1/things/{THING}", _bearer(AGENT) | JSON, b'{"text":"set"}'),  # 403
    ("PUT", f"/v1/things/{THING}", _bearer(SUPERVISOR), b""),  # a required body missing
    ("PUT", f"/v1/things/{THING}", _bearer(SUPERVISOR) | JSON, b"null"),
    ("HEAD", "/v1/agents/alice", _bearer(AGENT), b""),  # no HEAD where FastAPI has none
    ("POST", "/webhooks/site/site-1", {"content-type": "text/plain"}, b"hi"),
    ("POST", "/webhooks/site/site-1", JSON, b'{"text":'),  # the endpoint reads the body: no decoding before
    ("POST", "/webhooks/site/site-2", {}, b"hi"),  # the endpoint's own error
    ("GET", "/webhooks/site/site-1?echostr=abc", {}, b""),
    ("HEAD", "/webhooks/site/site-1?echostr=abc", {}, b""),
    ("POST", "/webhooks/site/site-1/status", {}, b"CallStatus=completed"),
    ("POST", "/webhooks/site/site-1/ack", {}, b""),
    ("POST", "/webhooks/site/site-2/ack", {}, b""),
    ("POST", "/webhooks/site/site-1/text", {}, b""),
    ("POST", "/webhooks/site/site-1/gone", {}, b""),
    ("PUT", "/webhooks/site/site-1", {}, b""),  # 405
]


async def _answers(app: FastAPI, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a 500 is an answer to compare
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.request(method, path, headers=headers, content=body)
    kept = sorted((k, v) for k, v in response.headers.items() if k != "date")
    return response.status_code, kept, response.content


@pytest.mark.parametrize(("method", "path", "headers", "body"), REQUESTS)
async def test_a_plain_route_answers_every_request_as_fastapi_does(
    method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    assert await _answers(_app(plain=True), method, path, headers, body) == await _answers(
        _app(plain=False), method, path, headers, body
    )


async def test_an_answer_that_strays_from_its_schema_fails_in_the_service_as_before() -> None:
    for plain in (True, False):
        status, _, body = await _answers(_app(plain), "GET", "/v1/agents/alice", _bearer(AGENT), b"")
        assert (status, body) == (
            500,
            b'{"error":"internal_error","detail":"an unexpected error occurred; it has been logged"}',
        )


def test_the_document_is_fastapis_and_the_plain_routes_come_first() -> None:
    plain, fastapi = _app(plain=True), _app(plain=False)
    assert plain.openapi() == fastapi.openapi()
    served_first = [(route.path, sorted(route.methods or ())) for route in plain.router.routes[:9]]  # type: ignore[attr-defined]
    assert served_first == [
        ("/v1/things/{thing_id}/note", ["POST"]),
        ("/v1/things/{thing_id}", ["PUT"]),
        ("/v1/agents/{agent_id}", ["GET"]),
        ("/webhooks/site/{site_id}", ["POST"]),
        ("/webhooks/site/{site_id}", ["GET"]),
        ("/webhooks/site/{site_id}/status", ["POST"]),
        ("/webhooks/site/{site_id}/ack", ["POST"]),
        ("/webhooks/site/{site_id}/text", ["POST"]),
        ("/webhooks/site/{site_id}/gone", ["POST"]),
    ]


async def test_the_usual_request_is_served_without_fastapis_solving(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.dependencies.utils import solve_dependencies as original

    solved: list[object] = []

    async def counting(**kwargs: Any) -> Any:
        solved.append(kwargs["dependant"].call)
        return await original(**kwargs)

    monkeypatch.setattr("fastapi.routing.solve_dependencies", counting)
    request = ("POST", f"/v1/things/{THING}/note", _bearer(AGENT) | JSON, b'{"text":"hi"}')
    assert (await _answers(_app(plain=True), *request))[0] == 200
    assert solved == []
    assert (await _answers(_app(plain=True), "POST", "/v1/things/not-a-uuid/note", _bearer(AGENT), b""))[0] == 422
    assert len(solved) == 1  # the unusual one went to FastAPI
    webhook = ("POST", "/webhooks/site/site-1", {"content-type": "text/plain"}, b"hi")
    assert (await _answers(_app(plain=True), *webhook))[:3:2] == (
        202,
        b'{"thing_id":"%s","by":"site-1","note":"hi"}' % THING.encode(),
    )
    assert len(solved) == 1


async def test_the_access_line_names_the_template_the_id_and_the_caller() -> None:
    with service_logs() as out:
        await _answers(_app(plain=True), "POST", f"/v1/things/{THING}/note", _bearer(AGENT), b"")
    (line,) = [line for line in lines(out) if line["logger"] == "kefu.access"]
    assert (line["path"], line["status"], line["agent_id"]) == ("/v1/things/{thing_id}/note", 200, "alice")
