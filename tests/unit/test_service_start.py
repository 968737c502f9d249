"""A service's command starts it without garbage collection (its imports, app and state allocate much and free little:
some 300 collections for nothing); collection is on again, after one collection and a freeze, when it serves."""

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
from starlette.applications import Starlette

from tools import assemble, cli
from tools.startup import LifespanServer, listen


@pytest.fixture
def collecting() -> Iterator[None]:
    yield
    gc.enable()  # whatever a failing test left


def test_a_service_command_starts_without_collection_and_leaves_it_on(
    monkeypatch: pytest.MonkeyPatch, collecting: None
) -> None:
    seen: list[bool] = []

    def serve(service: str) -> None:
        seen.append(gc.isenabled())
        raise KeyboardInterrupt  # stopped by Ctrl-C while starting

    monkeypatch.setattr(assemble, "serve", serve)
    assert cli.main(["router"]) == 130
    assert seen == [False]
    assert gc.isenabled()


async def test_collection_is_on_again_once_the_lifespan_has_started(collecting: None) -> None:
    during: list[bool] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        during.append(gc.isenabled())
        yield

    app = Starlette(lifespan=lifespan)
    server = LifespanServer(uvicorn.Config(app, log_config=None), app)
    gc.disable()
    serving = asyncio.create_task(server.serve(sockets=[listen("127.0.0.1", 0)]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        assert during == [False]  # the state a lifespan loads is not collected while it loads
        assert gc.isenabled()
    finally:
        server.should_exit = True
        await serving
