"""Fixtures shared by the integration and end-to-end tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.processes import RunningBroker, start_broker

# Tests run in parallel on a shared machine: how long an example takes proves nothing.
settings.register_profile("zchat", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("zchat")


@pytest.fixture(autouse=True)
def own_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test, and every process it starts, gets empty per-user directories.

    Clients pin broker keys per host:port in ``known_brokers``; a test's random port may
    be one an earlier run pinned with another key, so the user's own file is never read.
    A broker without ``--data-dir`` and `zchat-load`'s cached accounts would share the
    user's data and cache directories with tests running in parallel, or with the user.
    Tests that need a particular directory set ``XDG_CONFIG_HOME`` (etc.) themselves.
    """
    for kind in ("config", "data", "cache"):
        monkeypatch.setenv(f"XDG_{kind.upper()}_HOME", str(tmp_path_factory.mktemp(kind)))


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
