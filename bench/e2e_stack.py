"""The system under test for ``bench.e2e``: ``kefu dev`` on a generated configuration, and what its processes use.

``kefu dev`` (the public command) starts the embedded PostgreSQL and Tansu broker, applies the migrations, creates
the topics and runs channels, router and escalation as processes of their own, with the ``KEFU_*`` settings passed
through its environment. The configuration is the example's (channel accounts, queues, groups, the escalation
policy) with its agents replaced by ``agents`` bench agents in every group with every skill, each with
``capacity`` slots on every channel, available from the start, and a bearer token each.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from kefu.settings import EXAMPLE_CONFIG

SERVICES = ("channels", "router", "escalation")
LOAD_ENV = {
    "KEFU_LOG_LEVEL": "WARNING",
    # the limiter would answer 429 at 1,000/s per account: the bench measures the service, not its limit
    "KEFU_WEBHOOK_RATE_LIMIT": "1000000/second",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, *, agents: int, capacity: int) -> tuple[Path, Path]:
    """The bench configuration and the agents' tokens (JSON ``{agent_id: token}``)."""
    config: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    routing = config["routing"]
    channels = sorted({channel for queue in routing["queues"] for channel in queue.get("channels", [])})
    skills = dict.fromkeys(routing["skills"], 5)
    tokens = {f"bench{i:04d}": f"bench-token-{i:06d}-e2e" for i in range(agents)}
    routing["agents"] = [
        {
            "id": agent_id,
            "name": f"Bench agent {agent_id}",
            "groups": list(routing["groups"]),
            "skills": skills,
            "capacity": dict.fromkeys(channels, capacity),
            "initial_presence": "available",
        }
        for agent_id in tokens
    ]
    config["auth"]["tokens"] = [
        {"token": token, "role": "agent", "agent_id": agent_id, "name": agent_id} for agent_id, token in tokens.items()
    ] + [{"token": "bench-token-supervisor-e2e", "role": "supervisor", "name": "bench supervisor"}]
    config_path, tokens_path = directory / "kefu.yaml", directory / "agents.json"
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    tokens_path.write_text(json.dumps(tokens), encoding="utf-8")
    return config_path, tokens_path


def kefu_command() -> list[str]:
    script = Path(sys.executable).with_name("kefu")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tools.cli"]


@dataclass
class Stack:
    """A running ``kefu dev``: its ports, the broker's address and the processes to watch."""

    directory: Path
    config_path: Path
    ports: dict[str, int] = field(default_factory=dict)
    kafka_port: int = 0
    process: "subprocess.Popen[bytes] | None" = None
    log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def start(self, *, timeout: float = 180.0) -> None:
        names = (*SERVICES, "receiver")
        self.ports = {name: free_port() for name in names}
        self.kafka_port = free_port()
        flags = [arg for name in names for arg in (f"--{name}-port", str(self.ports[name]))]
        self.log_path = self.directory / "kefu-dev.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own command
                [
                    *kefu_command(),
                    "dev",
                    "--data-dir",
                    str(self.directory / "data"),
                    "--kafka-port",
                    str(self.kafka_port),
                    *flags,
                ],
                env={**os.environ, **LOAD_ENV, "KEFU_CONFIG_PATH": str(self.config_path)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # its own session: the terminal's Ctrl-C reaches the bench, which stops kefu dev in order
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        pending = set(SERVICES)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                if self.process.poll() is not None:
                    raise RuntimeError(f"kefu dev exited with {self.process.returncode}: see {self.log_path}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kefu dev was not ready after {timeout:.0f}s: see {self.log_path}")
                for name in list(pending):
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{self.url(name)}/readyz").status_code == 200:
                            pending.discard(name)
                time.sleep(0.3)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def processes(self) -> dict[str, list[psutil.Process]]:
        """The service processes, the broker and PostgreSQL (its postmaster with its backends)."""
        assert self.process is not None
        found: dict[str, list[psutil.Process]] = {}
        root = psutil.Process(self.process.pid)
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                line = child.cmdline()
                if line and line[-1] in SERVICES:
                    found[line[-1]] = [child]
                elif "broker" in line:
                    found["broker"] = [child]
        data = str(self.directory / "data")
        for proc in psutil.process_iter(["cmdline"]):
            line = proc.info["cmdline"] or []
            if any(data in part for part in line) and any(part.endswith("postgres") for part in line[:1]):
                found["postgres"] = [proc]
        return found

    def stop(self) -> None:
        """SIGTERM to ``kefu dev`` (it stops the services, the broker, then PostgreSQL); its group is killed if it
        has not finished within a minute."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Usage:
    """CPU (percent of one core) and RSS of groups of processes between ``start`` and ``stop``; a group's
    PostgreSQL backends are counted with their postmaster."""

    def __init__(self, groups: dict[str, list[psutil.Process]]) -> None:
        self.groups = groups
        self._begin: dict[str, float] = {}
        self._began = 0.0
        self._machine_begin: Any = None
        self.cpu: dict[str, float] = {}
        self.rss_mb: dict[str, float] = {}
        self.machine_cpu = 0.0

    @staticmethod
    def _members(procs: list[psutil.Process]) -> list[psutil.Process]:
        members = []
        for proc in procs:
            members.append(proc)
            with contextlib.suppress(psutil.Error):
                if proc.name().startswith("postgres"):
                    members += proc.children(recursive=True)
        return members

    def _cpu(self, name: str) -> float:
        total = 0.0
        for proc in self._members(self.groups[name]):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    def start(self) -> None:
        self._began = time.monotonic()
        self._begin = {name: self._cpu(name) for name in self.groups}
        self._machine_begin = psutil.cpu_times()

    def stop(self) -> None:
        elapsed = max(1e-6, time.monotonic() - self._began)
        self.cpu = {name: 100 * (self._cpu(name) - self._begin[name]) / elapsed for name in self.groups}
        rss: dict[str, float] = {}
        for name, procs in self.groups.items():
            members = self._members(procs)
            total = 0
            for proc in members:
                with contextlib.suppress(psutil.Error):
                    # PostgreSQL's processes share its buffers: their proportional share, not each one's RSS
                    total += proc.memory_full_info().pss if len(members) > 1 else proc.memory_info().rss
            rss[name] = total / 2**20
        self.rss_mb = rss
        end = psutil.cpu_times()
        busy = sum(end) - end.idle - sum(self._machine_begin) + self._machine_begin.idle
        whole = sum(end) - sum(self._machine_begin)
        self.machine_cpu = 100 * busy / whole if whole > 0 else 0.0
