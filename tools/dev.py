"""``kefu dev``: the whole system on one machine with nothing installed but Python.

Starts an embedded PostgreSQL and an embedded Kafka-protocol broker (unless ``KEFU_DATABASE_URL``
/ ``KEFU_KAFKA_BOOTSTRAP`` name external ones), applies the migrations, creates the topics, and
runs channels, router and escalation as child processes, with a receiver for the escalation
policy's notifications (``tools.receiver``): every webhook of the policy whose URL is that receiver is
signed with a secret generated at start. Ctrl-C (or SIGTERM) stops the services first (SIGTERM, then
waiting while they drain their requests, consumers and outboxes), then the broker and the database. The
services and the broker run in sessions of their own (PostgreSQL's ``pg_ctl`` does the same), so a
terminal's Ctrl-C, which signals the whole foreground process group, reaches only ``kefu dev``. A service that
exits stops them all, or, with ``--restart`` (``KEFU_DEV_RESTART=1``), is started again with the same command line
and environment, as a process manager would (``make bench-restart`` times it).
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from contracts import ALL_TOPICS
from kefu import kafka
from kefu.config_file import load_section
from services.escalation.config import EscalationSettings
from services.escalation.domain.policy import EscalationPolicy, Webhook
from tools import migrate
from tools.embedded import EmbeddedKafka, EmbeddedPostgres
from tools.receiver import generate_secret
from tools.startup import listen

SERVICES = ("channels", "router", "escalation", "receiver")
LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class DevOptions:
    data_dir: Path
    host: str
    ports: dict[str, int]
    kafka_port: int | None
    restart: bool = False  # a service that exits is started again (a process manager's part) instead of stopping all


def run(options: DevOptions) -> int:
    """Run the stack until interrupted; return the exit status."""
    stop = _StopSignal()
    settings = EscalationSettings()
    # read before anything starts: a broken policy stops kefu dev with file, line and field
    policy = load_section(settings.policy_path, "escalation", EscalationPolicy)
    _check_ports(options)
    hooks = receiver_hooks(policy, options.ports["receiver"])
    secret = generate_secret()
    with contextlib.ExitStack() as stack:
        database_url = os.environ.get("KEFU_DATABASE_URL")
        if not database_url:
            _say("starting embedded PostgreSQL …")
            database_url = stack.enter_context(EmbeddedPostgres(options.data_dir / "pg")).url()
        bootstrap = os.environ.get("KEFU_KAFKA_BOOTSTRAP")
        own_broker: dict[str, str] = {}
        if not bootstrap:
            _say("starting embedded Kafka-protocol broker (Tansu) …")
            bootstrap = stack.enter_context(EmbeddedKafka(options.kafka_port)).bootstrap
            # Tansu holds a join for half the session timeout (kefu.kafka): 1 s with 2 s, not 5 with Kafka's 10 s,
            # so a service restarted serves again in seconds; a Kafka of your own refuses sessions under 6 s
            own_broker = {kafka.SESSION_TIMEOUT_ENV: os.environ.get(kafka.SESSION_TIMEOUT_ENV) or "2000"}
        _say("applying migrations …")
        migrate.upgrade(database_url)
        asyncio.run(kafka.ensure_topics(bootstrap, ALL_TOPICS))
        env = {
            **os.environ,
            "KEFU_DATABASE_URL": database_url,
            "KEFU_KAFKA_BOOTSTRAP": bootstrap,
            "KEFU_CONFIG_PATH": str(settings.config_path),
            "KEFU_POLICY_PATH": str(settings.policy_path),
            "KEFU_HOST": options.host,
            **own_broker,
        }
        own_env = {
            "escalation": {hook.secret: secret for hook in hooks},
            "receiver": {"KEFU_RECEIVER_SECRET": secret, "KEFU_HOST": LOOPBACK[0]},
        }

        def spawn(name: str) -> "subprocess.Popen[bytes]":
            return _spawn(name, {**env, **own_env.get(name, {})}, options.ports[name])

        children = {name: spawn(name) for name in SERVICES}
        stack.callback(_stop_all, children)
        if not _wait_healthy(options, children, stop):
            return 1
        _banner(options, database_url, bootstrap, settings, hooks)
        if not watch(children, lambda: stop.requested, spawn if options.restart else None):
            return 1
        _say("stopping …")
    return 0


QUICK_EXIT_SECONDS = 10.0  # a service that exits sooner after its start is failing to start: restarts back off
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # seconds before the 1st, 2nd, … restart after quick exits


def watch(
    children: dict[str, "subprocess.Popen[bytes]"],
    stopped: Callable[[], bool],
    respawn: Callable[[str], "subprocess.Popen[bytes]"] | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Watch the services until a stop is requested (True); one that exits is started again by ``respawn`` (the same
    command line and environment), or, without it, ends the watch (False). A service that keeps exiting within
    ``QUICK_EXIT_SECONDS`` of its start waits longer each time (``RESTART_BACKOFF``), as a process manager's does."""
    began: dict[str, float] = {}
    quick_exits: dict[str, int] = {}
    due: dict[str, float] = {}  # exited services, and when they start again
    while not stopped():
        now = clock()
        for name, child in children.items():
            if name in due:
                if now >= due[name] and respawn is not None:
                    del due[name]
                    children[name], began[name] = respawn(name), now
                continue
            if child.poll() is None:
                continue
            if respawn is None:
                _say(f"{name} exited with status {child.returncode}; stopping kefu")
                return False
            quick = now - began.get(name, float("-inf")) < QUICK_EXIT_SECONDS
            quick_exits[name] = quick_exits.get(name, 0) + 1 if quick else 0
            wait = RESTART_BACKOFF[min(quick_exits[name], len(RESTART_BACKOFF)) - 1] if quick_exits[name] else 0.0
            _say(f"{name} exited with status {child.returncode}; starting it again in {wait:g} s")
            due[name] = now + wait
        sleep(0.1)
    return True


def _check_ports(options: DevOptions) -> None:
    """Refuse at once, before anything starts, when a service's port is taken (``PortInUse`` names its option)."""
    for name, port in options.ports.items():
        host = LOOPBACK[0] if name == "receiver" else options.host
        listen(host, port, setting=f"--{name}-port").close()
    if options.kafka_port is not None and not os.environ.get("KEFU_KAFKA_BOOTSTRAP"):
        listen(LOOPBACK[0], options.kafka_port, setting="--kafka-port").close()


def receiver_hooks(policy: EscalationPolicy, port: int) -> list[Webhook]:
    """The policy's webhooks that post to the receiver ``kefu dev`` runs on loopback ``port``."""
    return [
        hook
        for target in policy.targets.values()
        for hook in target.notify
        if hook.url.host in LOOPBACK and hook.url.port == port
    ]


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
        [sys.executable, "-m", "tools.cli", name],
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
                    if client.get(f"{_base(options, name)}/readyz").status_code == 200:
                        pending.discard(name)
            time.sleep(0.1)
    return True


def _base(options: DevOptions, name: str) -> str:
    host = LOOPBACK[0] if name == "receiver" else options.host
    return f"http://{host}:{options.ports[name]}"


def _banner(
    options: DevOptions, database_url: str, bootstrap: str, settings: EscalationSettings, hooks: list[Webhook]
) -> None:
    from tools.demo import CRISIS_DEMO, describe

    base = {name: _base(options, name) for name in SERVICES}
    flags = "".join(
        f" --{name}-url {base[name]}"
        for name, default in (("channels", 8000), ("router", 8001), ("receiver", 8003))
        if base[name] != f"http://{LOOPBACK[0]}:{default}"  # kefu demo's defaults
    )
    receiving = f"{len(hooks)} webhooks of the policy post here" if hooks else "no webhook of the policy posts here"
    lines = [
        "",
        "kefu dev is ready",
        f"  channels    {base['channels']}   POST /webhooks/webchat/{{site_id}}",
        f"  router      {base['router']}   agent desktop API, docs at {base['router']}/docs",
        f"  escalation  {base['escalation']}   GET /v1/escalations, GET /v1/routing-events",
        f"  receiver    {base['receiver']}   GET /notifications, verified escalation webhooks ({receiving})",
        f"  postgres    {database_url}",
        f"  kafka       {bootstrap}",
        f"  config      {settings.config_path}",
        f"  policy      {settings.policy_path}",
        *describe(settings.config_path),
        "",
        f'  try: kefu demo "我想咨询一下这款空调"{flags}',
        f'       kefu demo "{CRISIS_DEMO}" --conversation demo-2{flags}   (a crisis: watch it arrive here)',
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _say(message: str) -> None:
    print(f"kefu dev: {message}", file=sys.stderr, flush=True)
