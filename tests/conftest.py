"""Fixtures shared by the integration and end-to-end tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import RunningBroker, start_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RunningBroker]:
    """A real `zchat-broker` on free loopback ports with its own data dir.

    The test fails if the broker does not exit cleanly (code 0) on SIGTERM.
    """
    running = start_broker(tmp_path / "broker-data")
    try:
        yield running
    finally:
        code = running.stop(signal.SIGTERM)
    assert code == 0, f"broker exited with {code}:\n{running.output.text()}"
