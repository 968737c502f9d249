"""The ``kefu`` command's errors, run as an operator runs it: one readable line with a hint, a non-zero exit
status, no traceback; log lines around it (JSON) at WARNING at most."""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.support import free_port
from tools.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration


def _kefu(*args: str, **env: str) -> "subprocess.CompletedProcess[str]":
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=180,  # a command's imports and start-up on a loaded machine; only a hang comes near it
        check=False,
    )


def _the_line(result: "subprocess.CompletedProcess[str]", command: str) -> str:
    """The one line the command says about its failure; everything else on stderr is a log line below ERROR."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith(f"kefu {command}: ")]
    assert len(said) == 1, result.stderr
    for line in result.stderr.splitlines():
        if line not in said:
            assert json.loads(line)["level"] in {"DEBUG", "INFO", "WARNING"}, line
    return said[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_demo_with_nothing_listening_asks_whether_kefu_dev_runs() -> None:
    port = free_port()
    result = _kefu("demo", "--channels-url", f"http://127.0.0.1:{port}")
    line = _the_line(result, "demo")
    assert f"nothing answers at http://127.0.0.1:{port}/" in line
    assert "is `kefu dev` running?" in line
    assert result.stderr.strip() == line


def test_router_with_an_unreachable_database_says_so() -> None:
    port = free_port()
    result = _kefu(
        "router",
        KEFU_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/kefu",
        KEFU_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        KEFU_PORT=str(free_port()),
    )
    line = _the_line(result, "router")
    assert f"cannot reach the database kefu at 127.0.0.1:{port}" in line
    assert "is PostgreSQL running there?" in line


def test_router_with_a_missing_database_says_how_to_make_it(postgres: EmbeddedPostgres) -> None:
    result = _kefu(
        "router",
        KEFU_DATABASE_URL=postgres.url("kefu_never_created"),
        KEFU_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        KEFU_PORT=str(free_port()),
    )
    line = _the_line(result, "router")
    assert "the database kefu_never_created" in line
    assert "does not exist: create it, then run `kefu migrate`" in line


def test_a_service_on_a_busy_port_names_the_port_and_the_setting(busy_port: int) -> None:
    line = _the_line(_kefu("channels", KEFU_PORT=str(busy_port)), "channels")
    assert f"port {busy_port} on 127.0.0.1 is in use" in line
    assert "KEFU_PORT" in line


def test_kefu_dev_on_a_busy_port_refuses_before_starting_anything(busy_port: int, tmp_path: Path) -> None:
    ports = [f"--{name}-port={free_port()}" for name in ("channels", "escalation", "receiver")]
    result = _kefu("dev", "--data-dir", str(tmp_path / "kefu"), *ports, "--router-port", str(busy_port))
    line = _the_line(result, "dev")
    assert f"port {busy_port} on 127.0.0.1 is in use" in line
    assert "--router-port" in line
    assert not (tmp_path / "kefu").exists(), "nothing was started"
