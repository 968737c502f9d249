"""The services' one skeleton (``kefu.app``, ``kefu.background``): what every service's app answers alike, and how
its background loops live and die."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from opentelemetry import metrics, trace
from prometheus_client import CollectorRegistry, Counter

from kefu.app import service_app
from kefu.background import background
from kefu.errors import ServiceError


class Gone(ServiceError):
    status, code = 410, "gone"


@dataclass
class Running:
    up: bool = True


async def _down() -> None:
    raise OSError("no route to host")


async def _up() -> None:
    return None


def _app(refused: Counter | None = None) -> FastAPI:
    router = APIRouter()

    @router.get("/gone")
    async def gone() -> None:
        raise Gone("it went away")

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[Running]:
        yield Running()

    return service_app(
        "test",
        running,
        name="thing",
        checks=lambda thing: {"database": _up, "broker": _up if thing.up else _down},
        routers=[router],
        refused=refused,
    )


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app in its lifespan, called in process."""
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_a_service_error_answers_as_it_declares_and_is_counted() -> None:
    registry = CollectorRegistry()
    refused = Counter("refused", "refused", ["reason"], registry=registry)
    async with serving(_app(refused)) as client:
        answer = await client.get("/gone")
    assert (answer.status_code, answer.json()) == (410, {"error": "gone", "detail": "it went away"})
    assert registry.get_sample_value("refused_total", {"reason": "gone"}) == 1


async def test_the_ops_routes_read_the_running_service_on_app_state() -> None:
    app = _app()
    async with serving(app) as client:
        assert isinstance(app.state.thing, Running)
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.json() == {"ready": True, "checks": {"database": "ok", "broker": "ok"}}
        app.state.thing.up = False
        answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {"ready": False, "checks": {"database": "ok", "broker": "unavailable: OSError"}}
        assert (await client.get("/metrics")).status_code == 200
    assert "/v1/tokens" not in app.openapi()["paths"]  # no tokens given: no token API


async def test_a_dying_loop_is_logged_when_it_dies_and_the_others_are_cancelled_on_exit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped = asyncio.Event()

    async def dies() -> None:
        raise RuntimeError("boom")

    async def runs() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    with caplog.at_level(logging.ERROR, logger="kefu.background"):
        async with background({"dies": dies(), "runs": runs()}):
            await asyncio.sleep(0.01)
            assert [r.getMessage() for r in caplog.records] == ["background task dies died"]
            assert not stopped.is_set()
    assert stopped.is_set()


async def test_a_request_does_not_look_for_an_opentelemetry_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """None is installed: FastAPI's per-request look at the global providers would find none, every time."""
    looked: list[str] = []
    for module, getter in ((trace, "get_tracer_provider"), (metrics, "get_meter_provider")):
        monkeypatch.setattr(module, getter, lambda name=getter: looked.append(name))
    async with serving(_app()) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/gone")).status_code == 410
    assert looked == []
