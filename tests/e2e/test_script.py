"""Script mode: `zchat-client` with stdin and stdout as pipes, as a bot would run it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.processes import OutputWatcher, RunningBroker, script, start_broker

PASSWORD = "bot-password-1"


@dataclass
class Bot:
    """A script-mode client; ``output`` collects stdout and stderr lines."""

    process: subprocess.Popen[str]
    output: OutputWatcher

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def end_input(self) -> int:
        """Close stdin (EOF) and wait for the exit code."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(15)


def run_bot(
    bots: list[Bot],
    broker: RunningBroker,
    *args: str,
    env: dict[str, str] | None = None,
) -> Bot:
    environment = dict(os.environ, ZCHAT_PASSWORD=PASSWORD, PYTHONUNBUFFERED="1")
    environment.pop("NO_COLOR", None)
    environment.update(env or {})
    process = subprocess.Popen(
        [
            script("zchat-client"),
            "--host",
            broker.host,
            "--port",
            str(broker.port),
            "--key-port",
            str(broker.key_port),
            *args,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    output = OutputWatcher()
    threading.Thread(target=output.follow, args=(process.stdout,), daemon=True).start()
    bot = Bot(process, output)
    bots.append(bot)
    return bot


def test_two_bots_talk_in_a_room(broker: RunningBroker, bots: list[Bot]) -> None:
    dave = run_bot(bots, broker, "--user", "dave", "--register", "--room", "room1")
    dave.output.wait_for(r"^Registered dave\.$")
    dave.output.wait_for(r"^Joined room \[room1\]$")
    carol = run_bot(bots, broker, "--user", "carol", "--register", "--room", "room1")
    carol.output.wait_for(r"^Joined room \[room1\]$")
    dave.output.wait_for(r"^carol joined room \[room1\]$")

    carol.say("hello dave")
    dave.output.wait_for(r"^\[\d\d:\d\d:\d\d\] carol: hello dave$")
    dave.say("hi carol")
    carol.output.wait_for(r"^\[\d\d:\d\d:\d\d\] dave: hi carol$")
    carol.say("LIST")
    carol.output.wait_for(r"^Members of \[room1\] <2>: carol, dave$")
    carol.say("/nonsense")
    carol.output.wait_for(r"^error: unknown command /nonsense")
    carol.say("still talking after an error")
    dave.output.wait_for(r"carol: still talking after an error$")

    assert carol.end_input() == 0
    dave.output.wait_for(r"^carol left room \[room1\]$")
    assert dave.end_input() == 0
    for bot in (carol, dave):
        assert PASSWORD not in bot.output.text()
        assert "\x1b" not in bot.output.text()


def test_a_control_character_is_refused_and_reported(
    broker: RunningBroker, bots: list[Bot]
) -> None:
    dave = run_bot(bots, broker, "--user", "dave", "--register")
    dave.output.wait_for(r"^Joined room \[default\]$")
    dave.say("\x1b[2J")
    dave.output.wait_for(r"^error: text must not contain control character U\+001B")
    assert dave.end_input() == 0


def test_a_script_needs_a_password(broker: RunningBroker) -> None:
    env = {key: value for key, value in os.environ.items() if key != "ZCHAT_PASSWORD"}
    done = subprocess.run(
        [script("zchat-client"), "--port", str(broker.port), "--user", "dave"],
        input="",
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=15,
    )
    assert done.returncode == 2
    assert "needs --password-file or $ZCHAT_PASSWORD" in done.stderr


def test_password_file_and_taken_name(
    broker: RunningBroker, bots: list[Bot], tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    first = run_bot(bots, broker, "--user", "erin", "--register", "--password-file", str(secret))
    first.output.wait_for(r"^Joined room \[default\]$")
    assert first.end_input() == 0

    again = run_bot(
        bots, broker, "--user", "erin", "--register", env={"ZCHAT_PASSWORD": "another-password"}
    )
    assert again.end_input() == 1
    again.output.wait_for(r"^zchat-client: .*taken")


def test_an_absent_broker_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run(
        [script("zchat-client"), "--host", "127.0.0.1", "--port", str(port), "--user", "dave",
         "--connect-timeout", "0.5"],
        input="",
        check=False,
        capture_output=True,
        text=True,
        env=dict(os.environ, ZCHAT_PASSWORD=PASSWORD),
        timeout=15,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"zchat-client: cannot fetch the broker's key from 127.0.0.1:{port + 2}; "
        "pass --server-key KEY (zchat-broker --show-key prints it)"
    )


def test_a_stopped_client_resumes_its_expired_session(tmp_path: Path, bots: list[Bot]) -> None:
    broker = start_broker(tmp_path / "broker-data", "--lease", "1")
    try:
        dave = run_bot(bots, broker, "--user", "dave", "--register")
        dave.output.wait_for(r"^Joined room \[default\]$")
        dave.process.send_signal(signal.SIGSTOP)
        try:
            broker.output.wait_for(r"dave timed out")
        finally:
            dave.process.send_signal(signal.SIGCONT)
        dave.output.wait_for(r"^Connection to the broker lost \(.*expired\); reconnecting…$")
        dave.output.wait_for(r"^Reconnected to the broker\.$")
        dave.say("back again")
        dave.output.wait_for(r"^\[\d\d:\d\d:\d\d\] dave: back again$")
        assert dave.end_input() == 0
    finally:
        assert broker.stop() == 0


def test_a_room_that_cannot_be_joined_ends_the_script_after_logging_out(
    broker: RunningBroker, bots: list[Bot]
) -> None:
    bot = run_bot(bots, broker, "--user", "dave", "--register", "--room", "two words")
    assert bot.end_input() == 1
    bot.output.wait_for(r"^zchat-client: room must not contain whitespace")
    broker.output.wait_for(r"dave logged out")
