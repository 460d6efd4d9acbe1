"""Fixtures for the broker's loopback tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from tests.broker.core import CoreHarness


@pytest.fixture
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """A ZeroMQ context; the test fails if it leaves a socket open.

    Leftover sockets are closed first, so a failing test reports its own error
    instead of hanging in `Context.term`.
    """
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    leftover = [socket for socket in list(ctx._sockets) if not socket.closed]
    ctx.destroy(linger=0)
    assert not leftover, f"{len(leftover)} socket(s) left open"


@pytest.fixture
def core() -> CoreHarness:
    """A broker core on memory storage, with a clock the test moves."""
    return CoreHarness()
