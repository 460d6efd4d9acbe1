"""Fixtures of the end-to-end tests: clients in terminals and scripts, killed if left running."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.terminal import Terminal
from tests.e2e.test_script import Bot


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    """Clients opened by a test; killed if the test ends with them still running."""
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


@pytest.fixture
def bots() -> Iterator[list[Bot]]:
    started: list[Bot] = []
    yield started
    for bot in started:
        if bot.process.poll() is None:
            bot.process.kill()
        bot.process.wait()
        for stream in (bot.process.stdin, bot.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
