"""Nothing lost, through the real `zchat-client`: scrollback on joining, /history, direct
messages and the unread count, and a broker killed in the middle of a conversation."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

from tests.e2e.terminal import Terminal
from tests.e2e.test_interactive import ALICE_PASSWORD, TIME, open_client
from tests.e2e.test_script import PASSWORD, Bot, run_bot
from tests.processes import UNGATED, RunningBroker, start_broker

FAST = ("--message-rate", "100000", "--message-burst", "100000", *UNGATED)
LINE = r"^\[\d\d:\d\d:\d\d\] "


def chat_as(
    terminals: list[Terminal],
    broker: RunningBroker,
    name: str,
    *args: str,
    register: bool = True,
    password: str = ALICE_PASSWORD,
) -> Terminal:
    client = open_client(
        terminals,
        broker,
        "--user",
        name,
        *(("--register",) if register else ()),
        *args,
        env={"ZCHAT_PASSWORD": password},
    )
    client.expect(f"Logged in as {name}.")
    return client


def test_history_on_joining_and_paging_back(
    broker: RunningBroker, terminals: list[Terminal]
) -> None:
    alice = chat_as(terminals, broker, "alice", "--room", "room1")
    alice.expect(r"Joined room \[room1\]")
    for n in range(1, 9):
        alice.sendline(f"line {n}")
        alice.expect(rf"{TIME} alice: line {n}")

    bob = chat_as(terminals, broker, "bob", "--room", "room1", "--history", "5")
    bob.expect(r"Joined room \[room1\]")
    for n in range(5, 9):
        bob.expect(rf"{TIME} \(history\) alice: line {n}")
    bob.expect(r"\(history\) bob joined room \[room1\]")
    alice.sendline("live now")
    bob.expect(rf"{TIME} alice: live now")

    bob.sendline("/history 3")
    for n in range(2, 5):
        bob.expect(rf"{TIME} \(history\) alice: line {n}")
    bob.sendline("/history")
    bob.expect(r"\(history\) alice joined room \[room1\]")
    bob.expect(rf"{TIME} \(history\) alice: line 1")
    bob.expect(r"This is the start of \[room1\]\.")
    bob.sendline("/history 0")
    bob.expect(r"usage: /history \[N\], N from 1 to 500")
    bob.sendline("/quit")
    assert bob.wait_exit() == 0
    assert len(re.findall(r"alice: line 6", bob.screen)) == 1
    assert len(re.findall(r"alice: live now", bob.screen)) == 1
    alice.sendline("/quit")
    assert alice.wait_exit() == 0


def test_direct_messages_and_the_unread_count_at_login(
    broker: RunningBroker, terminals: list[Terminal], bots: list[Bot]
) -> None:
    carol = run_bot(bots, broker, "--user", "carol", "--register")
    carol.output.wait_for(r"^Joined room \[default\]$")
    assert carol.end_input() == 0  # carol exists, and is away

    alice = chat_as(terminals, broker, "alice", "--room", "room1")
    bob = chat_as(terminals, broker, "bob", "--room", "room2")
    bob.expect(r"Joined room \[room2\]")
    alice.expect(r"Joined room \[room1\]")
    bob.sendline("/msg alice psst, only you can read this")
    bob.expect(rf"{TIME} you → alice: psst, only you can read this")
    alice.expect(rf"{TIME} bob → you: psst, only you can read this")
    alice.sendline("/dm bob got it")
    bob.expect(rf"{TIME} alice → you: got it")
    bob.sendline("/msg nobody hello?")
    bob.expect("there is no user nobody")
    bob.sendline("/msg carol see you tomorrow")
    bob.sendline("/dm carol bring the keys")
    bob.expect(rf"{TIME} you → carol: bring the keys")

    back = chat_as(terminals, broker, "carol", register=False, password=PASSWORD)
    back.expect(r"You have 2 unread direct messages\.")
    back.expect(rf"{TIME} bob → you: see you tomorrow")
    back.expect(rf"{TIME} bob → you: bring the keys")
    back.expect("Create New:")
    back.child.sendeof()
    assert back.wait_exit() == 0
    for client in (alice, bob):
        client.sendline("/quit")
        assert client.wait_exit() == 0


def test_the_terminal_says_when_the_connection_is_lost_and_back(
    tmp_path: Path, terminals: list[Terminal], bots: list[Bot]
) -> None:
    data = tmp_path / "broker-data"
    first = start_broker(data)
    second: RunningBroker | None = None
    try:
        alice = chat_as(terminals, first, "alice", "--room", "room1")
        alice.expect(r"Joined room \[room1\]")
        first.stop(signal.SIGKILL)
        alice.expect(r"Connection to the broker lost \(.*\); reconnecting…")
        second = start_broker(data, port=first.port, pub_port=first.pub_port)
        alice.expect(r"Reconnected to the broker\.", timeout=30)
        bob = run_bot(bots, second, "--user", "bob", "--register", "--room", "room1")
        bob.output.wait_for(r"^Joined room \[room1\]$")
        bob.say("welcome back")
        alice.expect(rf"{TIME} bob: welcome back")
        alice.sendline("thanks")
        bob.output.wait_for(LINE + r"alice: thanks$")
        alice.sendline("/quit")
        assert alice.wait_exit() == 0
        assert bob.end_input() == 0
        assert len(re.findall(r"bob: welcome back", alice.screen)) == 1
    finally:
        if second is not None:
            assert second.stop() == 0


def messages(bot: Bot) -> list[str]:
    """``name: text`` of every live room message a script printed, in order."""
    found = []
    for line in bot.output.text().splitlines():
        match = re.match(LINE + r"(?!\()(\S+: .*)$", line)
        if match:
            found.append(match.group(1))
    return found


def test_scripts_talking_through_a_broker_kill_lose_and_repeat_nothing(
    tmp_path: Path, bots: list[Bot]
) -> None:
    data = tmp_path / "broker-data"
    first = start_broker(data, *FAST)
    second: RunningBroker | None = None
    names = ("dave", "erin", "frank")
    try:
        talkers = [
            run_bot(bots, first, "--user", n, "--register", "--room", "room1") for n in names
        ]
        for talker in talkers:
            talker.output.wait_for(r"^Joined room \[room1\]$")
        for talker in talkers:
            for name in names:  # everyone is in: each saw the others join (or had them in history)
                talker.output.wait_for(rf"{name} joined room \[room1\]$")

        def round_of(n: int) -> None:
            for name, talker in zip(names, talkers, strict=True):
                talker.say(f"{name} round {n}")

        def heard(n: int, timeout: float = 10.0) -> None:
            for talker in talkers:
                for name in names:
                    talker.output.wait_for(LINE + rf"{name}: {name} round {n}$", timeout)

        for n in range(5):
            round_of(n)
            heard(n)
        first.stop(signal.SIGKILL)
        round_of(5)  # sent into the outage: retried with the same ids once the broker is back
        for talker in talkers:
            talker.output.wait_for(r"^Connection to the broker lost")
        second = start_broker(data, *FAST, port=first.port, pub_port=first.pub_port)
        heard(5, timeout=45)
        for n in range(6, 10):
            round_of(n)
            heard(n)
        for talker in talkers:
            assert talker.end_input() == 0

        olive = run_bot(bots, second, "--user", "olive", "--register", "--room", "room1",
                        "--history", "500")  # fmt: skip
        olive.output.wait_for(r"^Joined room \[room1\]$")
        olive.output.wait_for(r"\(history\) olive joined room \[room1\]$")
        assert olive.end_input() == 0
        stored = [
            match.group(1)
            for line in olive.output.text().splitlines()
            if (match := re.match(LINE + r"\(history\) (\S+: .*)$", line))
        ]
        assert len(stored) == 3 * 10 and len(set(stored)) == len(stored), stored
        for talker in talkers:
            assert messages(talker) == stored  # once each, in the room's order
            output = talker.output.text()
            assert output.count("Connection to the broker lost") == 1
            assert output.count("Reconnected to the broker.") == 1
            assert PASSWORD not in output
    finally:
        if second is not None:
            assert second.stop() == 0


def test_a_session_the_broker_forgot_asks_for_the_password_again(
    tmp_path: Path, terminals: list[Terminal], bots: list[Bot]
) -> None:
    """A broker restarted on another database (same key) refuses the resume token."""
    data = tmp_path / "broker-data"
    first = start_broker(data)
    second: RunningBroker | None = None
    try:
        alice = chat_as(terminals, first, "alice", "--room", "room1")
        alice.expect(r"Joined room \[room1\]")
        dave = run_bot(bots, first, "--user", "dave", "--register")
        dave.output.wait_for(r"^Joined room \[default\]$")
        first.stop(signal.SIGKILL)
        alice.expect(r"Connection to the broker lost")
        fresh = tmp_path / "fresh-data"
        fresh.mkdir(mode=0o700)
        for key_file in ("broker.key", "broker.key_secret"):
            shutil.copy2(data / key_file, fresh / key_file)
        second = start_broker(fresh, port=first.port, pub_port=first.pub_port)
        alice.expect(r"The broker ended your session \(.*log in.*\)\. Log in again\.", 30)
        alice.expect("Press 1 to register")
        alice.expect("choice:")
        dave.output.wait_for(r"The broker ended your session \(.*\)\. Log in again\.", 30)
        assert dave.process.wait(15) == 1
        alice.child.sendeof()
        assert alice.wait_exit() == 0
    finally:
        if second is not None:
            assert second.stop() == 0
