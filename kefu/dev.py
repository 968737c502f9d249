"""``kefu dev``: the whole system on one machine with nothing installed but Python.

Starts an embedded PostgreSQL and an embedded Kafka-protocol broker (unless ``KEFU_DATABASE_URL``
/ ``KEFU_KAFKA_BOOTSTRAP`` name external ones), applies the migrations, creates the topics, and
runs channels, router and escalation as child processes. Ctrl-C (or SIGTERM) stops the services
first, then the broker and the database.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from contracts import ALL_TOPICS
from kefu import kafka, migrate
from kefu.embedded import EmbeddedKafka, EmbeddedPostgres
from kefu.settings import ServiceSettings

SERVICES = ("channels", "router", "escalation")


@dataclass(frozen=True)
class DevOptions:
    data_dir: Path
    host: str
    ports: dict[str, int]
    kafka_port: int | None


def run(options: DevOptions) -> int:
    """Run the stack until interrupted; return the exit status."""
    stop = _StopSignal()
    settings = ServiceSettings()
    with contextlib.ExitStack() as stack:
        database_url = os.environ.get("KEFU_DATABASE_URL")
        if not database_url:
            _say("starting embedded PostgreSQL …")
            database_url = stack.enter_context(EmbeddedPostgres(options.data_dir / "pg")).url()
        bootstrap = os.environ.get("KEFU_KAFKA_BOOTSTRAP")
        if not bootstrap:
            _say("starting embedded Kafka-protocol broker (Tansu) …")
            bootstrap = stack.enter_context(EmbeddedKafka(options.kafka_port)).bootstrap
        _say("applying migrations …")
        migrate.upgrade(database_url)
        asyncio.run(kafka.ensure_topics(bootstrap, ALL_TOPICS))
        env = {
            **os.environ,
            "KEFU_DATABASE_URL": database_url,
            "KEFU_KAFKA_BOOTSTRAP": bootstrap,
            "KEFU_CONFIG_PATH": str(settings.config_path),
            "KEFU_HOST": options.host,
        }
        children = {name: _spawn(name, env, options.ports[name]) for name in SERVICES}
        stack.callback(_stop_all, children)
        if not _wait_healthy(options, children, stop):
            return 1
        _banner(options, database_url, bootstrap, settings.config_path)
        while not stop.requested:
            for name, child in children.items():
                if child.poll() is not None:
                    _say(f"{name} exited with status {child.returncode}; stopping kefu")
                    return 1
            time.sleep(0.2)
        _say("stopping …")
    return 0


class _StopSignal:
    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True


def _spawn(name: str, env: dict[str, str], port: int) -> "subprocess.Popen[bytes]":
    # own session: Ctrl-C reaches only kefu dev, which then stops the services in order
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "kefu.cli", name],
        env={**env, "KEFU_PORT": str(port)},
        start_new_session=True,
    )


def _stop_all(children: dict[str, "subprocess.Popen[bytes]"]) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_healthy(options: DevOptions, children: dict[str, "subprocess.Popen[bytes]"], stop: _StopSignal) -> bool:
    pending = set(SERVICES)
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=1.0) as client:
        while pending:
            if stop.requested or time.monotonic() > deadline:
                _say("services did not become ready; stopping")
                return False
            for name in list(pending):
                if children[name].poll() is not None:
                    _say(f"{name} exited with status {children[name].returncode} while starting")
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"http://{options.host}:{options.ports[name]}/readyz").status_code == 200:
                        pending.discard(name)
            time.sleep(0.1)
    return True


def _banner(options: DevOptions, database_url: str, bootstrap: str, config_path: Path) -> None:
    from kefu.demo import describe

    base = {name: f"http://{options.host}:{port}" for name, port in options.ports.items()}
    lines = [
        "",
        "kefu dev is ready",
        f"  channels    {base['channels']}   POST /webhooks/webchat/{{site_id}}",
        f"  router      {base['router']}   agent desktop API, docs at {base['router']}/docs",
        f"  escalation  {base['escalation']}   GET /v1/routing-events",
        f"  postgres    {database_url}",
        f"  kafka       {bootstrap}",
        f"  config      {config_path}",
        *describe(config_path),
        "",
        f'  try: kefu demo "我想咨询一下这款空调" --channels-url {base["channels"]} --router-url {base["router"]}',
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _say(message: str) -> None:
    print(f"kefu dev: {message}", file=sys.stderr, flush=True)
