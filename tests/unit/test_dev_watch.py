"""``kefu dev`` watching its services: one that exits stops them all, or, with ``--restart``, is started again."""

import subprocess

import pytest

from tools import cli, dev


def _exited() -> "subprocess.Popen[bytes]":
    child = subprocess.Popen(["true"])
    child.wait()
    return child


def test_a_service_that_exits_ends_the_watch_without_restart() -> None:
    children = {"router": _exited()}
    assert dev.watch(children, lambda: False, None) is False


def test_a_service_that_exits_is_started_again_with_restart() -> None:
    started: list[str] = []

    def respawn(name: str) -> "subprocess.Popen[bytes]":
        started.append(name)
        return subprocess.Popen(["sleep", "30"])

    children = {"router": _exited()}
    try:
        assert dev.watch(children, lambda: bool(started), respawn) is True
        assert started == ["router"]
        assert children["router"].poll() is None  # the new process, watched from now on
    finally:
        children["router"].kill()
        children["router"].wait()


def test_restart_is_a_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dev.DevOptions] = []

    def run(options: dev.DevOptions) -> int:
        seen.append(options)
        return 0

    monkeypatch.delenv("KEFU_DEV_RESTART", raising=False)
    monkeypatch.setattr(dev, "run", run)
    assert cli.main(["dev"]) == 0
    assert cli.main(["dev", "--restart"]) == 0
    monkeypatch.setenv("KEFU_DEV_RESTART", "1")
    assert cli.main(["dev"]) == 0
    assert [options.restart for options in seen] == [False, True, True]
