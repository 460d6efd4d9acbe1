"""Fixtures for client tests: a zmq context that must terminate, and no stray tasks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
import zmq.asyncio


@pytest.fixture
async def context() -> AsyncIterator[zmq.asyncio.Context]:
    """A context shared by a test's clients; the test fails if a socket is left open.

    ``term()`` blocks until every socket is closed, so it runs on a thread with a
    deadline. Afterwards no task may be left running on the loop.
    """
    ctx = zmq.asyncio.Context()
    yield ctx
    stragglers = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and not task.done()
    ]
    terminator = threading.Thread(target=ctx.term, daemon=True)
    terminator.start()
    terminator.join(5)
    assert not terminator.is_alive(), "a socket was left open: the context did not terminate"
    assert not stragglers, f"tasks left running: {stragglers}"
