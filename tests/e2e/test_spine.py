"""The walking skeleton end to end: `kefu dev` as a user runs it, driven over HTTP only.

webhook → channels → Kafka → router → offer (REST and SSE) → accept → assignment → routing
events → escalation; then Ctrl-C stops every process it started.
"""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from kefu.demo import signed_request
from kefu.embedded import free_port

pytestmark = pytest.mark.e2e

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the demo site's, from deploy/examples/kefu.yaml
ALICE = {"authorization": "Bearer demo-token-alice-0001"}
SUPERVISOR = {"authorization": "Bearer demo-token-supervisor"}


class Stack:
    def __init__(self, process: "subprocess.Popen[str]", ports: dict[str, int]) -> None:
        self.process = process
        self.url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ports = {name: free_port() for name in ("channels", "router", "escalation")}
    env = {k: v for k, v in os.environ.items() if k not in ("KEFU_DATABASE_URL", "KEFU_KAFKA_BOOTSTRAP")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kefu.cli",
            "dev",
            "--data-dir",
            str(tmp_path_factory.mktemp("kefu")),
            "--channels-port",
            str(ports["channels"]),
            "--router-port",
            str(ports["router"]),
            "--escalation-port",
            str(ports["escalation"]),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 90
    banner = []
    for line in process.stdout:
        banner.append(line)
        if "kefu dev is ready" in line or time.monotonic() > deadline:
            break
    if process.poll() is not None or not any("kefu dev is ready" in line for line in banner):
        process.kill()
        pytest.fail("kefu dev did not start:\n" + "".join(banner))
    stack = Stack(process, ports)
    try:
        yield stack
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


async def _events(client: httpx.AsyncClient, url: str, into: list[tuple[str, dict[str, Any]]]) -> None:
    async with client.stream("GET", url, headers=ALICE) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                into.append((name, json.loads(line.removeprefix("data: "))))


@contextlib.asynccontextmanager
async def _listening(client: httpx.AsyncClient, url: str) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    received: list[tuple[str, dict[str, Any]]] = []
    task = asyncio.create_task(_events(client, url, received))
    try:
        yield received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task


async def _until(probe: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_one_contact_end_to_end(stack: Stack) -> None:
    router, channels, escalation = stack.url["router"], stack.url["channels"], stack.url["escalation"]
    async with httpx.AsyncClient(timeout=10) as client:
        for base in stack.url.values():
            assert (await client.get(f"{base}/readyz")).status_code == 200
            assert (await client.get(f"{base}/healthz")).json() == {"status": "ok"}
            assert "# TYPE" in (await client.get(f"{base}/metrics")).text

        agents = {a["agent_id"]: a for a in (await client.get(f"{router}/v1/agents", headers=SUPERVISOR)).json()}
        assert agents["alice"]["presence"] == "available"
        bob_away = await client.put(f"{router}/v1/agents/bob/status", json={"presence": "offline"}, headers=SUPERVISOR)
        assert bob_away.status_code == 200

        async with _listening(client, f"{router}/v1/agents/alice/events") as feed:
            body = json.dumps(
                {
                    "conversation_id": "e2e-1",
                    "visitor": {"id": "visitor-e2e", "name": "张伟"},
                    "message": {"text": "我想买一台空调", "sent_at": "2026-11-22T10:00:00+08:00"},
                },
                ensure_ascii=False,
            ).encode()
            headers = signed_request(SECRET, body, msg_id="msg_e2e_1")
            for _ in range(3):  # the platform retries the same delivery
                response = await client.post(f"{channels}/webhooks/webchat/demo", content=body, headers=headers)
                assert response.status_code == 202, response.text

            async def offers() -> list[dict[str, Any]]:
                return list((await client.get(f"{router}/v1/agents/alice/offers", headers=ALICE)).json())

            (offer,) = await _until(offers)
            assert offer["conversation_key"] == "webchat:demo:e2e-1"

            async def pushed() -> bool:
                return any(name == "offer.created" and data["offer_id"] == offer["offer_id"] for name, data in feed)

            await _until(pushed)

            accepted = await client.post(f"{router}/v1/offers/{offer['offer_id']}/accept", headers=ALICE)
            assert accepted.status_code == 200
            assignment = accepted.json()

            async def assigned_pushed() -> bool:
                return any(name == "assignment.created" for name, _ in feed)

            await _until(assigned_pushed)

        async def history() -> list[str]:
            events = (
                await client.get(f"{escalation}/v1/routing-events", params={"contact_id": offer["contact_id"]})
            ).json()
            types = [e["type"] for e in events]
            return types if len(types) >= 4 else []

        assert await _until(history) == ["queued", "offered", "accepted", "assigned"]
        assert len(await offers()) == 0
        assert assignment["agent_id"] == "alice"
        # three deliveries of one webhook made one contact
        metrics = (await client.get(f"{router}/metrics")).text
        assert 'kefu_router_contact_events_total{outcome="opened"} 1.0' in metrics


def test_ctrl_c_stops_everything(stack: Stack) -> None:
    children = psutil.Process(stack.process.pid).children(recursive=True)
    assert len(children) >= 4, "three services and the broker at least"
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=30) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"still running after Ctrl-C: {[p.info for p in alive]}"
    assert not Path("/proc").joinpath(str(stack.process.pid)).exists() or stack.process.poll() is not None
