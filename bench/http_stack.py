"""The fixed cost of a request through a service's HTTP stack (issue 12), before and after, in one run.

    python -m bench.http_stack [--baseline REV] [--rounds 5] [--requests 5000] [--connections 8]

A server process runs the kit's app (``kefu.app.service_app``: error handlers, access log, ``/healthz``) under the
services' uvicorn configuration (``tools.serve.server_config``: bounded httptools protocol, uvloop) with JSON logs
at INFO (to /dev/null), two routes of its own: an agent's authenticated GET (a static token, ``kefu.auth``),
the shape of a desktop call without its database work, and an authenticated POST with a small JSON body; and the
router's desktop API as the router serves it (``services.router.entrypoints``), its commands replaced by ones that
answer at once: an agent accepting an offer and completing an assignment with a disposition. A client
in this process (raw sockets, keep-alive, ``--connections`` at once) sends ``--requests`` of each; the table has
the server's CPU per request (user + system, from /proc) and requests/s, medians of ``--rounds``.

``--baseline REV`` serves the same app from a copy of that git revision's tree (``git archive``) as the "before";
variants alternate round by round, both servers up all along.
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
AGENT_TOKEN = "bench-agent-token-0123456789abcdef"  # noqa: S105 - a token of the bench's own server
HEADERS = f"Host: bench\r\nAuthorization: Bearer {AGENT_TOKEN}\r\nUser-Agent: bench\r\n"
BODY = b'{"note":"accepted from the desktop"}'
COMPLETION = b'{"disposition":"refund","resolved":true}'
OFFER_ID, ASSIGNMENT_ID = "0b7c2f4e-8d1a-4c3b-9e5f-6a7b8c9d0e1f", "5d2e8a1c-3f4b-4e6d-8a9b-0c1d2e3f4a5b"
REQUESTS = {
    "GET /healthz (no auth, DEBUG line)": b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n",
    "GET authenticated": f"GET /v1/bench/agents/agent-1/status HTTP/1.1\r\n{HEADERS}\r\n".encode(),
    "POST authenticated, JSON body": (
        f"POST /v1/bench/offers/offer-1/accept HTTP/1.1\r\n{HEADERS}Content-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode()
    + BODY,
    "router: POST /v1/offers/{id}/accept": (
        f"POST /v1/offers/{OFFER_ID}/accept HTTP/1.1\r\n{HEADERS}Content-Length: 0\r\n\r\n"
    ).encode(),
    "router: POST /v1/assignments/{id}/complete, JSON body": (
        f"POST /v1/assignments/{ASSIGNMENT_ID}/complete HTTP/1.1\r\n{HEADERS}Content-Type: application/json\r\n"
        f"Content-Length: {len(COMPLETION)}\r\n\r\n"
    ).encode()
    + COMPLETION,
}


def build_app() -> Any:
    """The kit's app with two bench routes (imported from whichever tree ``PYTHONPATH`` names)."""
    from fastapi import APIRouter, Depends
    from pydantic import BaseModel

    from kefu.app import service_app
    from kefu.auth import AuthConfig, Principal, Role, TokenConfig, TokenRegistry, caller

    class Note(BaseModel):
        note: str

    router = APIRouter()

    @router.get("/v1/bench/agents/{agent_id}/status")
    async def status(agent_id: str, who: Principal = Depends(caller)) -> dict[str, str]:
        return {"agent_id": agent_id, "presence": "available", "by": who.name}

    @router.post("/v1/bench/offers/{offer_id}/accept")
    async def accept(offer_id: str, body: Note, who: Principal = Depends(caller)) -> dict[str, str]:
        return {"offer_id": offer_id, "assignment_id": "a-1", "note": body.note, "agent_id": who.agent_id or ""}

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        yield None

    from services.router.entrypoints import app as router_app
    from services.router.entrypoints.api import router as desktop

    app = service_app("bench", running, name="bench", checks=lambda _: {}, routers=[router, desktop])
    token = TokenConfig.model_validate({"token": AGENT_TOKEN, "role": Role.AGENT, "agent_id": "agent-1"})
    app.state.tokens = TokenRegistry(AuthConfig(tokens=[token]))
    app.state.router = _desktop_without_database()
    if hasattr(router_app, "serve_desktop_plainly"):  # the tree serves the desktop API as the router does
        router_app.serve_desktop_plainly(app)
    return app


def _desktop_without_database() -> Any:
    """The router's running objects for its desktop routes: one open assignment of agent-1 in the state, and the
    commands that would write answering at once (``accept`` with that assignment)."""
    from datetime import UTC, datetime
    from types import SimpleNamespace
    from uuid import UUID

    from contracts import Channel
    from services.router import commands
    from services.router.domain.model import Assignment, ContactRef

    contact = ContactRef(UUID(int=1), "webchat:site:visitor", Channel.WEBCHAT, "presales", 0, datetime.now(UTC))
    assignment = Assignment(UUID(ASSIGNMENT_ID), contact, "agent-1")

    async def accept(service: Any, offer_id: Any, agent_id: str) -> Assignment:
        return assignment

    async def complete(service: Any, assignment_id: Any, agent_id: str | None, **_: Any) -> None:
        return None

    commands.accept, commands.complete = accept, complete
    state = SimpleNamespace(assignments={assignment.id: assignment})
    return SimpleNamespace(service=SimpleNamespace(state=state))


def serve(port: int) -> None:
    """The server process: the app under the services' uvicorn configuration and logging."""
    import uvicorn

    from kefu.logs import configure, logging_config
    from kefu.settings import ServiceSettings
    from tools.serve import server_config

    configure(level="INFO", json=True)
    settings = ServiceSettings(port=port, log_level="INFO", log_json=True)
    config = server_config(build_app(), settings, log_config=logging_config(level="INFO", json=True))
    uvicorn.Server(config).run()


def in_process(name: str, count: int) -> None:
    """Print the CPU µs per request of ``count`` requests ``name`` handed to the app itself (no server, no socket)."""
    from kefu.logs import configure

    configure(level="INFO", json=True)  # stderr: /dev/null, as the caller runs this
    app = build_app()
    head, _, body = REQUESTS[name].partition(b"\r\n\r\n")
    request_line, *header_lines = head.split(b"\r\n")
    method, target, _ = request_line.split(b" ")
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(b":") for line in header_lines)]
    scope: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1"}
    scope["method"] = method.decode()
    scope |= {"scheme": "http", "path": target.decode(), "raw_path": target, "query_string": b"", "root_path": ""}
    scope |= {"headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"unexpected status {message['status']}")

    async def run() -> float:
        for _ in range(200):  # warm-up
            await app(dict(scope), receive, send)
        started = time.process_time()
        for _ in range(count):
            await app(dict(scope), receive, send)
        return (time.process_time() - started) / count * 1e6

    print(asyncio.run(run()))


@dataclass
class Server:
    name: str
    tree: Path
    port: int
    process: subprocess.Popen[bytes]

    def cpu(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


@contextlib.contextmanager
def servers(baseline: str | None) -> Iterator[list[Server]]:
    trees: list[tuple[str, Path]] = []
    with tempfile.TemporaryDirectory(prefix="kefu-bench-http-") as root:
        if baseline:
            tree = Path(root) / "baseline"
            tree.mkdir()
            archive = subprocess.run(["git", "archive", baseline], cwd=REPO, check=True, capture_output=True)  # noqa: S603, S607
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)  # noqa: S603, S607
            trees.append((f"before ({baseline})", tree))
        trees.append(("after (working tree)", REPO))
        started: list[Server] = []
        try:
            for name, tree in trees:
                port = _free_port()
                env = {**os.environ, "PYTHONPATH": str(tree)}
                process = subprocess.Popen(  # noqa: S603 - our interpreter and our script
                    [sys.executable, str(Path(__file__).resolve()), "serve", str(port)],
                    cwd=tree,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                started.append(Server(name, tree, port, process))
            for server in started:
                _wait_for(server.port)
            yield started
        finally:
            for server in started:
                server.process.terminate()
                server.process.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"no server on port {port}")


async def _connection(port: int, request: bytes, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:200]!r}")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
    finally:
        writer.close()


async def load(server: Server, request: bytes, requests: int, connections: int) -> dict[str, float]:
    cpu, wall = server.cpu(), time.perf_counter()
    await asyncio.gather(*(_connection(server.port, request, requests // connections) for _ in range(connections)))
    done = requests // connections * connections
    cpu, wall = server.cpu() - cpu, time.perf_counter() - wall
    return {"server CPU µs/request": cpu / done * 1e6, "requests/s": done / wall}


def app_alone(server: Server, name: str, count: int) -> dict[str, float]:
    """The app of ``server``'s tree, handed ``count`` requests in a process of its own (``in_process``)."""
    script = [sys.executable, str(Path(__file__).resolve()), "in-process", name, str(count)]
    env = {**os.environ, "PYTHONPATH": str(server.tree)}
    out = subprocess.run(script, cwd=server.tree, env=env, check=True, capture_output=True, text=True)  # noqa: S603
    return {"app alone, CPU µs/request": float(out.stdout.strip().splitlines()[-1])}


async def main(args: argparse.Namespace) -> None:
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with servers(args.baseline) as started:
        for server in started:  # warm-up: imports done, code paths taken once
            for request in REQUESTS.values():
                await load(server, request, 400, args.connections)
        for r in range(args.rounds):
            for name, request in REQUESTS.items():
                for server in started if r % 2 == 0 else started[::-1]:
                    served = await load(server, request, args.requests, args.connections)
                    alone = await asyncio.to_thread(app_alone, server, name, args.requests)
                    results.setdefault((name, server.name), []).append(served | alone)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        names = [server.name for server in started]
    _table(results, names)


def _table(results: dict[tuple[str, str], list[dict[str, float]]], names: list[str]) -> None:
    two = len(names) == 2
    print("| request | measure | " + " | ".join(names) + (" | after/before |" if two else " |"))
    print("|---|---|" + "---:|" * (len(names) + two))
    for request in REQUESTS:
        for measure in results[(request, names[0])][0]:
            medians = [statistics.median(run[measure] for run in results[(request, name)]) for name in names]
            ratio = f" | {medians[1] / medians[0]:.2f}" if two else ""
            print(f"| {request} | {measure} | " + " | ".join(f"{m:,.1f}" for m in medians) + ratio + " |")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.http_stack", description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="a git revision whose tree serves the 'before'")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=8)
    return parser.parse_args(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]))
    elif sys.argv[1:2] == ["in-process"]:
        in_process(sys.argv[2], int(sys.argv[3]))
    else:
        asyncio.run(main(parse()))
