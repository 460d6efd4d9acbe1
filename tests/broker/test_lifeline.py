"""A spawned broker dies with the program that started it: each mechanism on its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import start_broker, wait_gone


def test_a_broker_stops_cleanly_when_its_stdin_closes(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "data")
    assert broker.process.stdin is not None
    broker.process.stdin.close()  # what the parent's death does to the pipe
    assert broker.process.wait(15) == 0, broker.output.text()
    broker.output.wait_for("Broker stopped.")


PARENT = """
import sys
from zchat.broker.lifeline import spawn_tied
child = spawn_tied([sys.executable, "-c", "import signal; signal.pause()"])
print(child.pid, flush=True)
sys.stdin.read()
"""
"""Spawns a child that never reads its stdin: only the death signal can end it."""


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_kernel_ends_a_tied_child_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None and parent.stdin is not None
    child = int(parent.stdout.readline())
    pidfd = os.pidfd_open(child)
    try:
        parent.kill()
        parent.wait(10)
        assert wait_gone(pidfd, timeout=10), "the child outlived its parent"
    finally:
        if not wait_gone(pidfd, timeout=0):
            os.kill(child, signal.SIGKILL)
        os.close(pidfd)
        parent.stdin.close()
        parent.stdout.close()
