"""The interactive client in a pseudo-terminal, used the way a person would."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.e2e.terminal import Terminal
from tests.processes import RunningBroker, start_broker

TIME = r"\[\d\d:\d\d:\d\d\]"
ALICE_PASSWORD = "alice-secret-1"
BOB_PASSWORD = "bob-secret-22"
HELP = (
    r"Commands: LIST, LEAVE, LOGOUT, /join ROOM, /rooms, /history \[N\], /msg USER TEXT, "
    r"/help, /quit"
)


def open_client(
    terminals: list[Terminal], broker: RunningBroker, *args: str, env: dict[str, str] | None = None
) -> Terminal:
    terminal = Terminal(
        "--host", broker.host, "--port", str(broker.port), "--key-port", str(broker.key_port),
        *args, env=env,
    )  # fmt: skip
    terminals.append(terminal)
    return terminal


def register(terminal: Terminal, name: str, password: str) -> None:
    terminal.expect("Press 1 to register")
    terminal.expect("Press 2 to login")
    terminal.expect("choice:")
    terminal.sendline("1")
    terminal.expect("Username:")
    terminal.sendline(name)
    terminal.expect("Password:")
    terminal.sendline(password)
    terminal.expect("Registered successfully.")
    terminal.expect(f"Logged in as {name}.")


def test_the_seed_conversation(broker: RunningBroker, terminals: list[Terminal]) -> None:
    alice = open_client(terminals, broker)
    register(alice, "alice", ALICE_PASSWORD)
    alice.expect(r"\* default <0>")
    alice.expect("Join a Chat Room or Create New:")
    alice.sendline("room1")
    alice.expect(rf"Joined room \[room1\]\. {HELP}")

    bob = open_client(terminals, broker)
    register(bob, "bob", BOB_PASSWORD)
    bob.expect(r"\* default <0>\n\* room1 <1>")
    bob.expect("Join a Chat Room or Create New:")
    bob.sendline("room1")
    bob.expect(r"Joined room \[room1\]")
    alice.expect(r"bob joined room \[room1\]")

    alice.sendline("hello bob")
    bob.expect(rf"{TIME} alice: hello bob")
    alice.expect(rf"{TIME} alice: hello bob")
    bob.sendline("hi alice, ça va?")
    alice.expect(rf"{TIME} bob: hi alice, ça va\?")
    bob.expect(rf"{TIME} bob: hi alice, ça va\?")

    alice.sendline("LIST")
    alice.expect(r"Members of \[room1\] <2>: alice, bob")

    bob.sendline("LEAVE")
    alice.expect(r"bob left room \[room1\]")
    bob.expect(r"\* default <0>\n\* room1 <1>")
    bob.expect("Join a Chat Room or Create New:")
    bob.sendline("room1")
    bob.expect(r"Joined room \[room1\]")
    alice.expect(r"bob joined room \[room1\]")

    bob.sendline("LOGOUT")
    alice.expect(r"bob left room \[room1\]")
    bob.expect("Press 1 to register")
    bob.expect("choice:")

    alice.sendline("/quit")
    assert alice.wait_exit() == 0
    bob.child.sendeof()
    assert bob.wait_exit() == 0

    # Sent lines are erased at the prompt and shown once, as the room relays them.
    assert len(re.findall(r"alice: hello bob", alice.screen)) == 1
    for terminal in (alice, bob):
        assert ALICE_PASSWORD not in terminal.screen
        assert BOB_PASSWORD not in terminal.screen


def test_mistakes_at_login_are_explained_and_can_be_retried(
    broker: RunningBroker, terminals: list[Terminal]
) -> None:
    first = open_client(terminals, broker)
    register(first, "alice", ALICE_PASSWORD)
    first.expect("Create New:")
    first.child.sendcontrol("c")
    assert first.wait_exit() == 0

    client = open_client(terminals, broker)
    client.expect("choice:")
    client.sendline("3")
    client.expect("Please press 1 or 2.")
    client.expect("choice:")
    client.sendline("1")
    client.expect("Username:")
    client.sendline("alice")
    client.expect("Password:")
    client.sendline("another-password")
    client.expect("Username alice is taken.")

    client.expect("choice:")
    client.sendline("1")
    client.expect("Username:")
    client.sendline("carol")
    client.expect("Password:")
    client.sendline("short")
    client.expect("Password not accepted: password must be at least 8 characters")

    client.expect("choice:")
    client.sendline("2")
    client.expect("Username:")
    client.sendline("alice")
    client.expect("Password:")
    client.sendline("wrong-password")
    client.expect("Wrong username or password.")

    client.expect("choice:")
    client.sendline("2")
    client.expect("Username:")
    client.sendline("alice")
    client.expect("Password:")
    client.sendline(ALICE_PASSWORD)
    client.expect("Logged in as alice.")
    client.expect("Create New:")
    client.child.sendeof()
    assert client.wait_exit() == 0
    for secret in (ALICE_PASSWORD, "another-password", "wrong-password"):
        assert secret not in client.screen


def test_commands_in_a_room(broker: RunningBroker, terminals: list[Terminal]) -> None:
    client = open_client(
        terminals, broker, "--user", "alice", "--register", "--room", "room1",
        env={"ZCHAT_PASSWORD": ALICE_PASSWORD},
    )  # fmt: skip
    client.expect("Registered successfully.")
    client.expect(r"Joined room \[room1\]")
    client.sendline("/help")
    client.expect(HELP)
    client.sendline("/join room2")
    client.expect(r"You left room \[room1\]")
    client.expect(r"Joined room \[room2\]")
    client.sendline("/rooms")
    client.expect(r"\* default <0>\n\* room1 <0>\n\* room2 <1>")
    client.sendline("/list")
    client.expect(r"Members of \[room2\] <1>: alice")
    client.sendline("/nonsense")
    client.expect("unknown command /nonsense")
    client.sendline("/logout")
    client.expect("Logged out.")
    client.expect("Press 1 to register")
    client.child.sendcontrol("c")
    assert client.wait_exit() == 0


def sender_colour(raw: str, name: str) -> bool:
    """Whether a foreground colour is switched on right before ``name:`` is written."""
    colour_on = r"\x1b\[(?:[0-9;]*;)?(?:3[1-7]|9[1-7])(?:;[0-9;]*)?m"
    return re.search(colour_on + re.escape(name) + r"\x1b\[0m:", raw) is not None


@pytest.mark.parametrize("no_color", ["", "1"])
def test_sender_names_are_coloured_unless_no_color(
    broker: RunningBroker, terminals: list[Terminal], no_color: str
) -> None:
    client = open_client(
        terminals, broker, "--user", "alice", "--register", "--room", "room1",
        env={"ZCHAT_PASSWORD": ALICE_PASSWORD, "NO_COLOR": no_color},
    )  # fmt: skip
    client.expect(r"Joined room \[room1\]")
    client.sendline("colourful?")
    client.expect(rf"{TIME} alice: colourful\?")
    assert sender_colour(client.raw, "alice") == (not no_color)
    client.sendline("/quit")
    assert client.wait_exit() == 0


def test_an_expired_session_is_resumed_without_the_password(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    broker = start_broker(tmp_path / "broker-data", "--lease", "1")
    try:
        client = open_client(
            terminals, broker, "--user", "alice", "--register", "--room", "room1",
            env={"ZCHAT_PASSWORD": ALICE_PASSWORD},
        )  # fmt: skip
        client.expect(r"Joined room \[room1\]")
        client.child.kill(signal.SIGSTOP)
        try:
            broker.output.wait_for(r"alice timed out")
        finally:
            client.child.kill(signal.SIGCONT)
        client.expect(r"Connection to the broker lost \(.*expired\); reconnecting…")
        client.expect(r"Reconnected to the broker\.")
        broker.output.wait_for(r"alice resumed a session")
        client.sendline("still here")
        client.expect(rf"{TIME} alice: still here")
        client.sendline("/quit")
        assert client.wait_exit() == 0
        assert "Password:" not in client.screen
    finally:
        assert broker.stop() == 0
