"""One small real run: `zchat-load --spawn-broker` as a subprocess, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.processes import script


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
