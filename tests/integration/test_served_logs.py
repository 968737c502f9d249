"""An app served by a real uvicorn (``tools.serve.server_config``) with the project's logging: uvicorn's own lines are
JSON like the rest, with ISO 8601 UTC times and no colour codes; each request is one ``kefu.access`` line, none
from ``uvicorn.access``."""

import re

import httpx
import pytest
from fastapi import FastAPI

from kefu.ops import install_error_handlers, ops_router
from tests.integration.support import free_port, server_in_thread
from tests.logcapture import lines, service_logs

pytestmark = pytest.mark.integration


def app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(ops_router(dict))

    @app.get("/v1/agents/{agent_id}")
    async def agent(agent_id: str) -> dict[str, str]:
        return {"id": agent_id}

    return app


async def test_uvicorns_lines_are_json_without_colour_and_each_request_is_one_access_line() -> None:
    with service_logs() as out, server_in_thread(app(), free_port()) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for path in ("/v1/agents/alice?token=s3cr3t", "/no/such/page", "/healthz"):
                await client.get(path)
    written = out.getvalue()
    logged = lines(out)
    assert "\x1b" not in written and "\\u001b" not in written and "s3cr3t" not in written
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]) for line in logged)
    assert any(line["logger"] == "uvicorn.error" and "Uvicorn running on" in line["message"] for line in logged)
    assert not [line for line in logged if line["logger"] == "uvicorn.access" or "color_message" in line]
    access = [(a["method"], a["path"], a["status"]) for a in logged if a["logger"] == "kefu.access"]
    # the probe is a DEBUG line, below the INFO the services log at
    assert access == [("GET", "/v1/agents/{agent_id}", 200), ("GET", "/no/such/page", 404)]
    assert next(a for a in logged if a["logger"] == "kefu.access")["agent_id"] == "alice"
