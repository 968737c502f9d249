"""The number of desktop event streams an agent may hold open on the running router: 429 beyond it, and a closed
stream gives its slot back."""

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import ALICE_TOKEN, BOB_TOKEN
from tests.integration.support import eventually, free_port, router_settings, server_in_thread
from tools.assemble import router_app
from tools.embedded import EmbeddedKafka

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def stream(client: httpx.AsyncClient, agent: str, token: str) -> AsyncIterator[httpx.Response]:
    async with client.stream(
        "GET", f"/v1/agents/{agent}/events", headers={"authorization": f"Bearer {token}"}
    ) as response:
        if response.status_code != 200:
            await response.aread()
        yield response


async def test_an_agent_gets_429_beyond_its_stream_limit_and_a_closed_stream_frees_its_slot(
    database_url: str, broker: EmbeddedKafka, config_path: Path
) -> None:
    settings = router_settings(database_url, broker, config_path).model_copy(update={"sse_max_streams_per_agent": 2})
    with server_in_thread(router_app(settings), free_port(), lifespan="on", name="router") as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:  # 10 s was once too few under load
            async with contextlib.AsyncExitStack() as held:
                first = await held.enter_async_context(stream(client, "alice", ALICE_TOKEN))
                second = await held.enter_async_context(stream(client, "alice", ALICE_TOKEN))
                assert (first.status_code, second.status_code) == (200, 200)
                for _ in range(3):
                    async with stream(client, "alice", ALICE_TOKEN) as third:
                        assert third.status_code == 429
                        assert third.json()["error"] == "too_many_streams"
                        assert int(third.headers["retry-after"]) >= 1
                async with stream(client, "bob", BOB_TOKEN) as bobs:
                    assert bobs.status_code == 200  # the limit is per agent
                await held.aclose()  # both of alice's desktops close

            async def freed() -> bool:
                # two at once again (and not three): the closed streams gave their slots back
                async with stream(client, "alice", ALICE_TOKEN) as one, stream(client, "alice", ALICE_TOKEN) as two:
                    if (one.status_code, two.status_code) != (200, 200):
                        return False
                    async with stream(client, "alice", ALICE_TOKEN) as three:
                        assert three.status_code == 429
                    return True

            assert await eventually(freed, timeout=30)
