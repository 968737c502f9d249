"""Simulated agents for ``bench.e2e``, run as a process of its own, through the router's public desktop API.

Each agent sets itself available (``PUT /v1/agents/{id}/status``) and keeps its event stream open
(``GET /v1/agents/{id}/events``, Server-Sent Events, its bearer token);
on ``offer.created`` it accepts the offer (``POST /v1/offers/{id}/accept``), works for ``--handle-seconds`` and
completes the assignment (``POST /v1/assignments/{id}/complete``). A dropped stream is opened again; a fresh
stream lists the pending offers again, and an offer already taken is not taken twice.

Reads ``{"agent_id": "token", ...}`` from ``--agents`` (JSON); prints ``ready`` once every stream is open, and on
SIGTERM or SIGINT one JSON line of counts, with the accepts' answer times (``accept_p50_ms``, ``accept_p99_ms``:
how long an agent waits for the router to give it the contact). Each agent has a connection of its own for its
calls, as a desktop has (``--connections``, by default one an agent).
"""

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from bench.e2e_http import HttpError, Pool, build, events

RECONNECT_SECONDS = 0.5
COMPLETE_ATTEMPTS = 5


class Agents:
    def __init__(self, port: int, tokens: dict[str, str], handle_seconds: float, connections: int) -> None:
        self.port, self.tokens, self.handle_seconds = port, tokens, handle_seconds
        self.host = f"127.0.0.1:{port}"
        self.pool = Pool("127.0.0.1", port, connections)
        self.counts: Counter[str] = Counter()
        self.seen: set[str] = set()
        self.opened: set[str] = set()
        self.ready = asyncio.Event()
        self.work: set[asyncio.Task[None]] = set()
        self.accept_seconds: list[float] = []

    def _opened(self, agent_id: str) -> None:
        self.opened.add(agent_id)
        if len(self.opened) == len(self.tokens):
            self.ready.set()

    async def desk(self, agent_id: str) -> None:
        headers = {"authorization": f"Bearer {self.tokens[agent_id]}"}
        path = f"/v1/agents/{agent_id}/events"
        while True:
            try:
                async for event in events("127.0.0.1", self.port, path, headers, lambda: self._opened(agent_id)):
                    if event.name == "offer.created":
                        offer_id = json.loads(event.data)["offer_id"]
                        if offer_id not in self.seen:
                            self.seen.add(offer_id)
                            self.counts["offers"] += 1
                            task = asyncio.get_running_loop().create_task(self.handle(agent_id, offer_id))
                            self.work.add(task)
                            task.add_done_callback(self.work.discard)
            except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
                self.counts[f"stream_error_{type(exc).__name__}"] += 1  # reported with the other counts at the end
            self.counts["stream_drops"] += 1
            await asyncio.sleep(RECONNECT_SECONDS)

    async def available(self, agent_id: str) -> None:
        """Set the agent available (the bench configuration starts them so; this says it through the API too)."""
        status, _ = await self._post(agent_id, f"/v1/agents/{agent_id}/status", b'{"presence": "available"}', "PUT")
        if status != 200:
            self.counts[f"status_{status}"] += 1

    async def _post(self, agent_id: str, path: str, body: bytes, method: str = "POST") -> tuple[int, bytes]:
        """The answer's status and body; status 0 when there was none (the error is counted by its name)."""
        headers = {"authorization": f"Bearer {self.tokens[agent_id]}", "content-type": "application/json"}
        try:
            answer = await self.pool.send(build(method, self.host, path, headers, body))
        except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
            self.counts[f"error {type(exc).__name__}"] += 1
            return 0, b""
        return answer.status, answer.body

    async def handle(self, agent_id: str, offer_id: str) -> None:
        sent = time.perf_counter()
        status, body = await self._post(agent_id, f"/v1/offers/{offer_id}/accept", b"")
        self.accept_seconds.append(time.perf_counter() - sent)
        if status != 200:
            self.counts[f"accept_{status}"] += 1
            return
        self.counts["accepted"] += 1
        assignment_id = json.loads(body)["assignment_id"]
        await asyncio.sleep(self.handle_seconds)
        for _ in range(COMPLETE_ATTEMPTS):  # an uncompleted assignment would hold the agent's slot for good
            status, _ = await self._post(agent_id, f"/v1/assignments/{assignment_id}/complete", b"{}")
            if status != 0:
                break
            await asyncio.sleep(RECONNECT_SECONDS)
        self.counts["completed" if status == 200 else f"complete_{status}"] += 1


async def run(options: argparse.Namespace) -> Counter[str]:
    tokens: dict[str, str] = json.loads(options.agents.read_text())
    agents = Agents(options.port, tokens, options.handle_seconds, options.connections or len(tokens))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.gather(*(agents.available(agent_id) for agent_id in tokens))
    desks = [loop.create_task(agents.desk(agent_id)) for agent_id in tokens]
    ready = loop.create_task(agents.ready.wait())
    stopped = loop.create_task(stop.wait())
    await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
    if agents.ready.is_set():
        print("ready", flush=True)
    await stopped
    for task in [*desks, *agents.work, ready]:
        task.cancel()
    for task in [*desks, *agents.work, ready]:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    agents.pool.close()
    if len(agents.accept_seconds) >= 2:
        cuts = statistics.quantiles(agents.accept_seconds, n=100, method="inclusive")
        agents.counts["accept_p50_ms"], agents.counts["accept_p99_ms"] = round(cuts[49] * 1e3), round(cuts[98] * 1e3)
    return agents.counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--agents", type=Path, required=True)
    parser.add_argument("--handle-seconds", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=0, help="calls' connections (default: one an agent)")
    options = parser.parse_args()
    import uvloop

    counts = uvloop.run(run(options))
    sys.stdout.write(json.dumps(dict(counts)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
