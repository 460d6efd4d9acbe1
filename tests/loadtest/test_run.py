"""One small real run: `zchat-load --spawn-broker` as a subprocess, nothing lost."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.processes import script, wait_gone


def test_a_small_spawned_run_delivers_everything(tmp_path: Path) -> None:
    report = tmp_path / "run.json"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    done = subprocess.run(
        [
            script("zchat-load"),
            "--spawn-broker",
            "--rooms",
            "2",
            "--members",
            "3",
            "--duration",
            "2",
            "--rate",
            "50",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=55,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(report.read_text())
    assert figures["lost"] == 0
    assert figures["expected"] > 0 and figures["delivered"] == figures["expected"]
    assert figures["accepted_per_s"] > 30
    assert figures["latency_ms"]["count"] > 0
    assert figures["broker_cpu_us_per_delivery"] > 0
    assert "deliveries" in done.stdout and "run " in done.stderr


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="waits on a pidfd (Linux)")
def test_a_killed_load_generator_takes_its_broker_with_it(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), TMPDIR=str(tmp_path))
    command = ["--spawn-broker", "--rooms", "1", "--members", "1", "--duration", "60"]
    command += ["--rate", "1"]
    load = subprocess.Popen(
        [script("zchat-load"), *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert load.stderr is not None
    broker_pid = pidfd = None
    try:
        for line in load.stderr:  # pytest-timeout ends the test if the line never comes
            spawned = re.search(r"Spawned broker \(pid (\d+)\)", line)
            if spawned:
                broker_pid = int(spawned[1])
                pidfd = os.pidfd_open(broker_pid)
                break
        assert pidfd is not None, "zchat-load never said it spawned a broker"
        load.kill()
        load.wait(10)
        assert wait_gone(pidfd, timeout=15), f"broker {broker_pid} outlived zchat-load"
    finally:
        load.kill()
        load.wait()
        if pidfd is not None:
            if not wait_gone(pidfd, timeout=0):
                os.kill(broker_pid, signal.SIGKILL)  # type: ignore[arg-type]
            os.close(pidfd)
