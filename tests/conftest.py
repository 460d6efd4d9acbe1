"""Fixtures shared by the integration and end-to-end tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import RunningBroker, start_broker


@pytest.fixture(autouse=True)
def own_config_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test, and every client it starts, gets an empty config directory.

    Clients pin broker keys per host:port in ``known_brokers``; a test's random port may
    be one an earlier run pinned with another key, so the user's own file is never read.
    Tests that need a particular directory set ``XDG_CONFIG_HOME`` themselves.
    """
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


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
