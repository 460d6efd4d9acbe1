"""Trusting the broker's key with the real `zchat-client` and a real broker.

Each test gets its own config directory (``XDG_CONFIG_HOME``), so nothing
touches the real known-brokers file. The broker is always on loopback here;
the questions asked about other brokers are covered by tests/client/test_trust.py.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.e2e.terminal import Terminal
from tests.processes import RunningBroker, script, start_broker
from zchat.protocol.fingerprint import key_fingerprint

PASSWORD = "trusting-password-1"
BANNER = "WARNING: THE BROKER'S KEY HAS CHANGED"


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    return tmp_path / "config"


def known_brokers(config_home: Path) -> Path:
    return config_home / "zchat" / "known_brokers"


def run_client(
    broker: RunningBroker, config_home: Path, *args: str, user: str = "dave"
) -> subprocess.CompletedProcess[str]:
    """A script-mode client with empty input: it connects, logs in, joins and logs out."""
    environment = dict(
        os.environ, ZCHAT_PASSWORD=PASSWORD, XDG_CONFIG_HOME=str(config_home), NO_COLOR="1"
    )
    return subprocess.run(
        [script("zchat-client"), "--host", broker.host, "--port", str(broker.port),
         "--user", user, *args],
        input="",
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=30,
    )  # fmt: skip


def pinned_line(broker: RunningBroker, key: str | None = None) -> str:
    return f"{broker.host}:{broker.port} {key or broker.server_key}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def other_key() -> str:
    return zmq.curve_keypair()[0].decode("ascii")


def test_first_contact_on_loopback_pins_the_key(broker: RunningBroker, config_home: Path) -> None:
    first = run_client(broker, config_home, "--register", "--key-port", str(broker.key_port))
    assert first.returncode == 0, first.stderr
    assert "Joined room [default]" in first.stdout.splitlines()
    assert first.stderr.strip() == (
        f"Trusting the new broker at {broker.host}:{broker.port} (it is on this machine): "
        f"key fingerprint {broker.fingerprint}, remembered in {known_brokers(config_home)}."
    )
    assert known_brokers(config_home).read_text().splitlines()[-1] == pinned_line(broker)

    again = run_client(broker, config_home, "--key-port", str(broker.key_port))
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert known_brokers(config_home).read_text().count(broker.server_key) == 1


def test_a_changed_key_is_refused_with_the_banner(tmp_path: Path, config_home: Path) -> None:
    first = start_broker(tmp_path / "first-data")
    try:
        pinning = run_client(first, config_home, "--register", "--key-port", str(first.key_port))
        assert pinning.returncode == 0, pinning.stderr
    finally:
        assert first.stop() == 0
    second = start_broker(
        tmp_path / "second-data", port=first.port, pub_port=first.pub_port, key_port=first.key_port
    )
    try:
        assert second.server_key != first.server_key
        refused = run_client(second, config_home, "--key-port", str(second.key_port))
        assert refused.returncode == 1
        assert refused.stdout == ""
        lines = refused.stderr.splitlines()
        assert lines[0] == "@" * 64
        assert BANNER in lines[1]
        assert f"for {first.host}:{first.port} is not the one" in refused.stderr
        assert "Someone may be intercepting your connection" in refused.stderr
        assert f"Remembered key fingerprint: {first.fingerprint}" in lines
        assert f"Offered key fingerprint:    {second.fingerprint}" in lines
        assert f"from {known_brokers(config_home)} and connect again." in refused.stderr
        assert "Traceback" not in refused.stderr
        assert known_brokers(config_home).read_text().splitlines()[-1] == pinned_line(first)
        assert "registered" not in second.output.text()
        assert "logged in" not in second.output.text()
    finally:
        assert second.stop() == 0


def test_the_right_server_key_works_without_the_key_service(
    broker: RunningBroker, config_home: Path
) -> None:
    nobody = str(free_port())
    given = run_client(
        broker, config_home, "--register", "--server-key", broker.server_key, "--key-port", nobody
    )
    assert given.returncode == 0, given.stderr
    assert {"Registered dave.", "Logged in as dave.", "Joined room [default]"} <= set(
        given.stdout.splitlines()
    )
    assert given.stderr.strip() == (
        f"Remembered the key for {broker.host}:{broker.port} "
        f"(fingerprint {broker.fingerprint}) in {known_brokers(config_home)}."
    )
    assert known_brokers(config_home).read_text().splitlines()[-1] == pinned_line(broker)

    again = run_client(broker, config_home, "--server-key", broker.server_key, "--key-port", nobody)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""


def test_a_wrong_server_key_is_refused_against_the_pin(
    broker: RunningBroker, config_home: Path
) -> None:
    pinning = run_client(broker, config_home, "--register", "--key-port", str(broker.key_port))
    assert pinning.returncode == 0, pinning.stderr
    wrong = other_key()
    refused = run_client(broker, config_home, "--server-key", wrong)
    assert refused.returncode == 1
    assert BANNER in refused.stderr
    assert f"Remembered key fingerprint: {broker.fingerprint}" in refused.stderr
    assert f"Given key fingerprint:      {key_fingerprint(wrong)}" in refused.stderr
    assert refused.stdout == ""
    assert known_brokers(config_home).read_text().splitlines()[-1] == pinned_line(broker)


def test_a_wrong_server_key_with_nothing_pinned_fails_and_is_not_remembered(
    broker: RunningBroker, config_home: Path
) -> None:
    wrong = other_key()
    refused = run_client(
        broker, config_home, "--register", "--server-key", wrong, "--connect-timeout", "1"
    )
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.strip() == (
        f"zchat-client: cannot reach the broker at {broker.host}:{broker.port}, or it does not "
        f"hold the key given with --server-key (fingerprint {key_fingerprint(wrong)}; "
        "compare with zchat-broker --show-key)"
    )
    assert not known_brokers(config_home).exists()
    assert "registered" not in broker.output.text()


def test_without_the_key_service_or_a_pin_the_client_says_what_to_pass(
    broker: RunningBroker, config_home: Path
) -> None:
    nobody = free_port()
    refused = run_client(broker, config_home, "--key-port", str(nobody), "--connect-timeout", "0.5")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"zchat-client: cannot fetch the broker's key from 127.0.0.1:{nobody}; "
        "pass --server-key KEY (zchat-broker --show-key prints it)"
    )
    assert not known_brokers(config_home).exists()


def test_a_pinned_key_is_tried_when_the_key_service_is_silent(
    broker: RunningBroker, config_home: Path
) -> None:
    pinning = run_client(broker, config_home, "--register", "--key-port", str(broker.key_port))
    assert pinning.returncode == 0, pinning.stderr
    trusting = run_client(broker, config_home, "--key-port", str(free_port()))
    assert trusting.returncode == 0, trusting.stderr
    assert "Joined room [default]" in trusting.stdout.splitlines()


def test_an_explicit_known_brokers_file_is_used(
    broker: RunningBroker, config_home: Path, tmp_path: Path
) -> None:
    chosen = tmp_path / "elsewhere" / "brokers"
    done = run_client(
        broker, config_home, "--register", "--key-port", str(broker.key_port),
        "--known-brokers", str(chosen),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert chosen.read_text().splitlines()[-1] == pinned_line(broker)
    assert not known_brokers(config_home).exists()


def test_a_broken_known_brokers_file_is_one_clear_line(
    broker: RunningBroker, config_home: Path
) -> None:
    path = known_brokers(config_home)
    path.parent.mkdir(parents=True)
    path.write_text(f"# mine\n{broker.host}:{broker.port} not-a-key\n")
    refused = run_client(broker, config_home, "--key-port", str(broker.key_port))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"zchat-client: {path} line 2: not a 40-character Z85 key: 'not-a-key'"
    )


def test_a_malformed_server_key_is_a_usage_error(broker: RunningBroker, config_home: Path) -> None:
    refused = run_client(broker, config_home, "--server-key", "too-short")
    assert refused.returncode == 2
    assert "a broker key is 40 characters of Z85" in refused.stderr


def test_the_terminal_shows_the_note_then_the_usual_prompts(
    broker: RunningBroker, config_home: Path
) -> None:
    terminal = Terminal(
        "--host", broker.host, "--port", str(broker.port), "--key-port", str(broker.key_port),
        env={"XDG_CONFIG_HOME": str(config_home)},
    )  # fmt: skip
    try:
        terminal.expect(
            rf"Trusting the new broker at {broker.host}:{broker.port} \(it is on this machine\): "
            rf"key fingerprint {broker.fingerprint}"
        )
        terminal.expect("Press 1 to register")
        terminal.expect("choice:")
    finally:
        terminal.close()
    assert known_brokers(config_home).read_text().splitlines()[-1] == pinned_line(broker)


def test_the_terminal_shows_the_banner_and_exits(tmp_path: Path, config_home: Path) -> None:
    path = known_brokers(config_home)
    path.parent.mkdir(parents=True)
    broker = start_broker(tmp_path / "broker-data")
    try:
        path.write_text(f"{broker.host}:{broker.port} {other_key()}\n")
        terminal = Terminal(
            "--host", broker.host, "--port", str(broker.port), "--key-port", str(broker.key_port),
            env={"XDG_CONFIG_HOME": str(config_home)},
        )  # fmt: skip
        try:
            terminal.expect(BANNER.replace("'", "."))
            terminal.expect(f"Offered key fingerprint: +{broker.fingerprint}")
            terminal.expect("Not connecting.")
            assert terminal.wait_exit() == 1
        finally:
            terminal.close()
    finally:
        assert broker.stop() == 0


# --- a broker on another address of this machine, so that it is not loopback ---------------


def outward_address() -> str | None:
    """This machine's address towards the network, if it has one besides loopback.

    Connecting a UDP socket sends nothing; it only picks the route.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.fixture
def distant_broker(tmp_path: Path) -> Iterator[RunningBroker]:
    """A broker bound only to this machine's non-loopback address."""
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    running = start_broker(tmp_path / "distant-data", "--host", address)
    running.host = address
    try:
        yield running
    finally:
        assert running.stop() == 0


def test_a_new_broker_elsewhere_is_refused_in_a_script(
    distant_broker: RunningBroker, config_home: Path
) -> None:
    refused = run_client(distant_broker, config_home, "--key-port", str(distant_broker.key_port))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"zchat-client: unknown broker key for {distant_broker.host}:{distant_broker.port} "
        f"(fingerprint {distant_broker.fingerprint}); pass --server-key KEY or --trust-new-broker"
    )
    assert not known_brokers(config_home).exists()

    trusted = run_client(
        distant_broker, config_home, "--register", "--key-port", str(distant_broker.key_port),
        "--trust-new-broker",
    )  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    assert "(--trust-new-broker)" in trusted.stderr
    assert known_brokers(config_home).read_text().splitlines()[-1] == pinned_line(distant_broker)


@pytest.mark.parametrize("answer", ["y", "n"])
def test_a_new_broker_elsewhere_is_shown_and_asked_about(
    distant_broker: RunningBroker, config_home: Path, answer: str
) -> None:
    terminal = Terminal(
        "--host", distant_broker.host, "--port", str(distant_broker.port),
        "--key-port", str(distant_broker.key_port), env={"XDG_CONFIG_HOME": str(config_home)},
    )  # fmt: skip
    try:
        terminal.expect(
            rf"The broker at {distant_broker.host}:{distant_broker.port} is new to this client\."
        )
        terminal.expect(rf"Its key fingerprint is {distant_broker.fingerprint}\.")
        terminal.expect(r"Trust it and remember it\? \[y/N\]")
        terminal.sendline(answer)
        if answer == "y":
            terminal.expect("Press 1 to register")
            terminal.expect("choice:")
            assert known_brokers(config_home).read_text().splitlines()[-1] == (
                pinned_line(distant_broker)
            )
        else:
            terminal.expect(
                f"zchat-client: not trusting the broker at {distant_broker.host}:"
                f"{distant_broker.port}; nothing was remembered"
            )
            assert terminal.wait_exit() == 1
            assert not known_brokers(config_home).exists()
    finally:
        terminal.close()
