"""One access line per request, in the app every service builds (``install_error_handlers``): method, the route's
path template, status and duration; ids in the path become fields, never part of the path."""

import logging
import uuid
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Route

from kefu.logs import bind
from kefu.ops import install_error_handlers, ops_router
from tests.logcapture import lines, service_logs


def app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(ops_router(dict))

    @app.post("/v1/offers/{offer_id}/accept")
    async def accept(offer_id: uuid.UUID, request: Request) -> dict[str, str]:
        bind(agent_id=request.headers["x-agent"])  # as ``kefu.auth`` does for the caller
        logging.getLogger("services.router").info("offer accepted")
        return {"offer": str(offer_id)}

    @app.get("/v1/contacts/{contact_id}")
    async def contact(contact_id: str) -> dict[str, str]:
        raise RuntimeError(f"bug while reading {contact_id}")

    async def webhook(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True}, status_code=202)

    # a plain Starlette route in front, as the channels' fast path has
    app.router.routes[:0] = [Route("/webhooks/webchat/{account_id}", webhook, methods=["POST"])]
    return app


async def requests(*calls: tuple[str, str]) -> list[dict[str, Any]]:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    with service_logs(level="DEBUG") as out:
        async with httpx.AsyncClient(transport=transport, base_url="http://kefu.test") as client:
            for method, url in calls:
                await client.request(method, url, headers={"x-agent": "alice"})
    return [line for line in lines(out) if line["logger"] in ("kefu.access", "services.router")]


async def test_each_request_gets_one_line_with_its_path_template_status_and_duration() -> None:
    offer, contact = uuid.uuid4(), uuid.uuid4()
    found = await requests(
        ("POST", f"/v1/offers/{offer}/accept?token=s3cr3t"),
        ("POST", "/webhooks/webchat/shop"),
        ("GET", f"/v1/contacts/{contact}"),
        ("GET", "/no/such/page"),
        ("DELETE", f"/v1/offers/{offer}/accept"),
    )
    accepted, *access = found
    assert (accepted["message"], accepted["agent_id"]) == ("offer accepted", "alice")
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("POST", "/v1/offers/{offer_id}/accept", 200),
        ("POST", "/webhooks/webchat/{account_id}", 202),
        ("GET", "/v1/contacts/{contact_id}", 500),
        ("GET", "/no/such/page", 404),
        ("DELETE", "/v1/offers/{offer_id}/accept", 405),
    ]
    assert all(a["level"] == "INFO" and isinstance(a["duration_ms"], float) and a["duration_ms"] >= 0 for a in access)
    assert access[0]["message"].startswith("POST /v1/offers/{offer_id}/accept 200 ")
    # the caller bound during the request is on its access line; a contact id the route names is a field
    assert access[0]["agent_id"] == "alice" and access[2]["contact_id"] == str(contact)
    assert str(offer) not in str(access) and "s3cr3t" not in str(access)


async def test_successful_probes_are_debug_lines() -> None:
    (probe,) = await requests(("GET", "/healthz"))
    assert (probe["path"], probe["status"], probe["level"]) == ("/healthz", 200, "DEBUG")
