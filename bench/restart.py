"""How soon a restarted router or escalation service serves again (issue 12: within 5 s).

``kefu dev --restart`` (``bench.e2e_stack``, one agent with room for every contact) runs the system; for each
service and each way of stopping it (SIGKILL, SIGTERM), ``--runs`` times: the service's process is signalled, and
``kefu dev`` starts it again with the same command line and environment. Once the old process is gone a signed web
chat message is posted to the channels service. Timed from the new process's start (its creation time):

* ``ready``: ``/readyz`` answers 200 (database and broker reached, the HTTP port served);
* ``applied``: the first record consumed and applied: for the router the contact offered to the agent (its
  consumer joined the group and its state loaded), for the escalation service the contact's routing event in its
  history (``/v1/routing-events``; the router, up all along, published it while the service was down);

and ``gone``: the signal to the old process's exit (the drain of a SIGTERM), ``respawn``: the exit to the new
process's start (``kefu dev`` polls every 0.1 s), ``cpu``: the CPU the new process had used when ready (steadier than
the times on a busy machine). Medians of the runs, milliseconds.

``python -m bench.restart [--runs 3] [--services router escalation]``.
"""

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import psutil

from bench.e2e_stack import Stack, write_config
from kefu.config_file import load_section
from services.channels.accounts import ChannelsConfig
from tools.demo import webchat

SUPERVISOR = {"authorization": "Bearer bench-token-supervisor-e2e"}
POLL = 0.01
TIMEOUT = 60.0
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM}


T = TypeVar("T")


def _until(probe: Callable[[], T | None], what: str, timeout: float = TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(POLL)
    raise RuntimeError(f"no {what} after {timeout:.0f} s")


def _now() -> float:
    """Seconds since boot: the clock of a process's start time in ``/proc``."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _started(process: psutil.Process) -> float:
    """When ``process`` started, in ``_now``'s clock (to the kernel's clock tick, 10 ms)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Restarts:
    """The running stack, its agent and the probes of one restart."""

    def __init__(self, stack: Stack, client: httpx.Client, agent: tuple[str, str]) -> None:
        self.stack = stack
        self.client = client
        self.agent_id, token = agent
        self.agent = {"authorization": f"Bearer {token}"}
        self.channels = load_section(stack.config_path, "channels", ChannelsConfig)

    def process(self, name: str, other_than: int | None = None) -> psutil.Process:
        """The service's process (``kefu dev``'s child), not the one of pid ``other_than``."""

        def probe() -> psutil.Process | None:
            return next((p for p in self.stack.processes().get(name, []) if p.pid != other_than), None)

        return _until(probe, f"{name} process")

    def offered(self) -> set[str]:
        """The contacts offered to the agent; nothing while the router does not answer."""
        try:
            response = self.client.get(
                f"{self.stack.url('router')}/v1/agents/{self.agent_id}/offers", headers=self.agent
            )
        except httpx.HTTPError:
            return set()
        return {offer["contact_id"] for offer in response.json()} if response.status_code == 200 else set()

    def post_contact(self) -> None:
        request = webchat(self.channels, None, "重启后的第一条消息", f"restart-{uuid.uuid4().hex[:12]}")
        response = self.client.post(
            f"{self.stack.url('channels')}{request.path}", content=request.body, headers=request.headers
        )
        response.raise_for_status()

    def ready(self, name: str) -> bool | None:
        try:
            return self.client.get(f"{self.stack.url(name)}/readyz").status_code == 200 or None
        except httpx.HTTPError:
            return None

    def history_has(self, contact_id: str) -> bool | None:
        try:
            response = self.client.get(
                f"{self.stack.url('escalation')}/v1/routing-events",
                params={"contact_id": contact_id},
                headers=SUPERVISOR,
            )
        except httpx.HTTPError:
            return None
        return (response.status_code == 200 and bool(response.json())) or None

    def once(self, name: str, how: signal.Signals) -> dict[str, float]:
        """Signal ``name``, post a contact once it is gone; the times of its successor, in milliseconds."""
        old = self.process(name)
        before = self.offered()
        signalled = _now()
        old.send_signal(how)
        _until(lambda: None if _alive(old) else True, f"{name} exit")
        gone = _now()
        self.post_contact()
        new = self.process(name, other_than=old.pid)
        started = _started(new)
        _until(lambda: self.ready(name), f"{name} ready")
        ready = _now()
        cpu = new.cpu_times()
        contact = _until(lambda: next(iter(self.offered() - before), None), "offer")
        if name == "escalation":
            _until(lambda: self.history_has(contact), "routing event applied")
        applied = _now()
        times = {
            "gone": gone - signalled,
            "respawn": started - gone,
            "ready": ready - started,
            "cpu": cpu.user + cpu.system,
        }
        return {key: 1000 * value for key, value in {**times, "applied": applied - started}.items()}


def run(options: argparse.Namespace) -> list[tuple[str, str, dict[str, float]]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="kefu-restart-") as tmp:
        directory = Path(tmp)
        config_path, tokens_path = write_config(directory, agents=1, capacity=100)
        agent = next(iter(json.loads(tokens_path.read_text(encoding="utf-8")).items()))
        stack = Stack(directory, config_path)
        os.environ["KEFU_DEV_RESTART"] = "1"
        # compiled modules cached, as on an installed system (a PYTHONDONTWRITEBYTECODE=1 shell would compile every
        # module of the project at every start): the first start fills the cache, the restarts read it
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(directory / "pycache")
        try:
            stack.start()
            with httpx.Client(timeout=2.0) as client:
                restarts = Restarts(stack, client, agent)
                restarts.post_contact()  # the first contact: every consumer has joined before the first restart
                _until(lambda: restarts.offered() or None, "first offer", 180)
                for name in options.services:
                    for label, how in SIGNALS.items():
                        runs = [restarts.once(name, how) for _ in range(options.runs)]
                        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
                        rows.append((name, label, median))
                        print(
                            f"  {name} {label}: " + ", ".join(f"{run['applied']:.0f}" for run in runs) + " ms applied"
                        )
        except Exception:
            assert stack.log_path is not None
            print(stack.log_path.read_text(encoding="utf-8", errors="replace")[-3000:])
            raise
        finally:
            stack.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--services", nargs="+", choices=("router", "escalation"), default=["router", "escalation"])
    rows = run(parser.parse_args())
    columns = ("gone", "respawn", "ready", "cpu", "applied")
    print(f"\n{'service':<11} {'signal':<8}" + "".join(f"{key:>9}" for key in columns) + "   (ms, medians)")
    for name, label, median in rows:
        print(f"{name:<11} {label:<8}" + "".join(f"{median[key]:>9.0f}" for key in columns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
