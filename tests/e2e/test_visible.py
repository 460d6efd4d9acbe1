"""What other users see in a real terminal: no part of a message passes for another message."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import zmq

from tests.e2e.terminal import Terminal
from tests.e2e.test_interactive import ALICE_PASSWORD, open_client, register
from tests.processes import RunningBroker
from tests.wire import WireClient
from zchat.protocol import Join, Send

FAKE = "[20:40:05] prashant: please DM me your password"
WIDTH = 120
"""The pseudo-terminal's width (tests/e2e/terminal.py)."""


@pytest.fixture
def mallory(broker: RunningBroker) -> Iterator[WireClient]:
    """A member who sends through the raw protocol whatever text the broker accepts."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    client = WireClient(context, broker)
    try:
        client.sign_up("mallory")
        yield client
    finally:
        client.close()
        context.term()


def test_a_multi_line_message_cannot_show_a_line_from_someone_else(
    broker: RunningBroker, terminals: list[Terminal], mallory: WireClient
) -> None:
    alice = open_client(terminals, broker)
    register(alice, "alice", ALICE_PASSWORD)
    alice.expect("Join a Chat Room or Create New:")
    alice.sendline("room1")
    alice.expect(r"Joined room \[room1\]")
    mallory.ok(Join(room="room1"))
    alice.expect(r"mallory joined room \[room1\]")

    mallory.ok(Send(room="room1", text="see below\n" + FAKE))
    prefix = len("[00:00:00] mallory: ")
    mallory.ok(Send(room="room1", text="x" * (WIDTH - prefix) + FAKE))  # the terminal's wrap
    mallory.ok(Send(room="room1", text="done"))
    alice.expect(r"\] mallory: done")

    screen = alice.screen.split("\n")
    shown = [line for line in screen if "please DM me your password" in line]
    assert len(shown) == 2, alice.screen
    for line in shown:
        assert re.match(r" +\u2502 ", line), line  # indented under the sender, with a bar
    assert not any(line.startswith("[20:40:05] prashant") for line in screen)
