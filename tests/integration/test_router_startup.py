"""Issue 12: a restarted router serves again sooner when its consumers join their groups (a second or two on Tansu)
while its routing state loads, not after; a state load that fails still stops the start with its own error."""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kefu import kafka
from services.router.service import RoutingService
from tests.integration.support import router_settings
from tools.assemble import router_running as running
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration


def joins_noted(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set when ``kafka.start_all`` is called (the consumers begin joining), before it runs."""
    joining = asyncio.Event()
    start_all = kafka.start_all

    async def noting(*clients: Any) -> None:
        joining.set()
        await start_all(*clients)

    monkeypatch.setattr(kafka, "start_all", noting)
    return joining


def state_load(monkeypatch: pytest.MonkeyPatch, then: Callable[[], Awaitable[None]]) -> None:
    """``RoutingService.start`` runs ``then`` before loading the state."""
    start = RoutingService.start

    async def waiting(service: RoutingService, *args: Any) -> None:
        await then()
        await start(service, *args)

    monkeypatch.setattr(RoutingService, "start", waiting)


async def test_the_consumers_join_while_the_state_loads(
    database_url: str, broker: EmbeddedKafka, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    joining = joins_noted(monkeypatch)

    async def joined_before_loading() -> None:
        await asyncio.wait_for(joining.wait(), timeout=10)  # before: the join began once the state had loaded

    state_load(monkeypatch, joined_before_loading)
    async with running(router_settings(database_url, broker, config_path)) as router:
        assert router.service.config_version is not None


async def test_a_failing_state_load_stops_the_start_with_its_error(
    database_url: str, broker: EmbeddedKafka, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    joining = joins_noted(monkeypatch)

    async def failing() -> None:
        await asyncio.wait_for(joining.wait(), timeout=10)
        raise RuntimeError("state load failed")

    state_load(monkeypatch, failing)
    with pytest.raises(RuntimeError, match="state load failed"):
        async with running(router_settings(database_url, broker, config_path)):
            pytest.fail("started")
    pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done()]
    assert not [task for task in pending if "noting" in repr(task.get_coro())]  # the join did not outlive it
