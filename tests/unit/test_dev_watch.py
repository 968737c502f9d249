"""``kefu dev`` watching its services: one that exits stops them all, or, with ``--restart``, is started again."""

import itertools
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


def test_a_service_that_keeps_failing_to_start_is_restarted_less_and_less_often() -> None:
    now = [0.0]
    starts: list[float] = []

    def respawn(name: str) -> "subprocess.Popen[bytes]":
        starts.append(now[0])
        return _exited()  # fails at once, every time

    def sleep(seconds: float) -> None:
        now[0] += seconds

    children = {"router": _exited()}  # ran since kefu dev started: its first restart is at once
    assert dev.watch(children, lambda: len(starts) == 5, respawn, clock=lambda: now[0], sleep=sleep) is True
    gaps = [round(later - earlier, 1) for earlier, later in itertools.pairwise(starts)]
    assert starts[0] == 0.1  # at the watch's next look (every 0.1 s)
    assert gaps == pytest.approx([1.1, 2.1, 4.1, 8.1], abs=0.15)  # each wait (1, 2, 4, 8 s) plus a look


def test_a_service_that_ran_a_while_before_exiting_is_restarted_at_once() -> None:
    now = [0.0]
    starts: list[float] = []

    def respawn(name: str) -> "subprocess.Popen[bytes]":
        starts.append(now[0])
        now[0] += dev.QUICK_EXIT_SECONDS  # this one runs a while before it exits
        return _exited()

    def sleep(seconds: float) -> None:
        now[0] += seconds

    children = {"router": _exited()}
    dev.watch(children, lambda: len(starts) == 3, respawn, clock=lambda: now[0], sleep=sleep)
    gaps = [round(later - earlier, 1) for earlier, later in itertools.pairwise(starts)]
    # no back-off: the exit seen at one look, the start at the next
    assert gaps == pytest.approx([dev.QUICK_EXIT_SECONDS + 0.2] * 2, abs=0.15)
