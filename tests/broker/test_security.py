"""The broker's transport security: CurveZMQ only, its key service, key files, and no leaks."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import zmq

from tests.processes import RunningBroker, script, start_broker
from tests.wire import WireClient, subscriber
from zchat.protocol import (
    ErrorCode,
    Hello,
    Join,
    Login,
    Register,
    Send,
    ServerKey,
    decode_incoming,
    encode_request,
)
from zchat.protocol.fingerprint import key_fingerprint

NO_ANSWER_MS = 1500
"""How long a refused client is given to get an answer it must never get."""


def test_a_plaintext_client_gets_nowhere(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    plain = WireClient(context, broker, server_key="")
    try:
        plain.dealer.send(encode_request(1, Hello()))
        assert not plain.dealer.poll(NO_ANSWER_MS), "a NULL-security client got an answer"
    finally:
        plain.close()


def test_a_client_with_the_wrong_broker_key_gets_nowhere(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    impostor_key = zmq.curve_keypair()[0].decode("ascii")
    wrong = WireClient(context, broker, server_key=impostor_key)
    try:
        wrong.dealer.send(encode_request(1, Hello()))
        assert not wrong.dealer.poll(NO_ANSWER_MS), "a client with the wrong key got an answer"
    finally:
        wrong.close()


def test_a_plaintext_subscriber_hears_nothing(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    talker = WireClient(context, broker)
    eavesdropper = context.socket(zmq.SUB)
    eavesdropper.setsockopt(zmq.LINGER, 0)
    eavesdropper.setsockopt(zmq.SUBSCRIBE, b"")
    eavesdropper.connect(f"tcp://{broker.host}:{broker.pub_port}")
    try:
        talker.sign_up("alice")
        talker.ok(Join(room="room1"))
        for n in range(20):
            talker.ok(Send(room="room1", text=f"message {n}"))
        assert not eavesdropper.poll(NO_ANSWER_MS)
    finally:
        eavesdropper.close()
        talker.close()


def test_the_key_service_hands_out_the_public_key_and_nothing_else(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    asker = context.socket(zmq.DEALER)
    asker.setsockopt(zmq.LINGER, 0)
    asker.setsockopt(zmq.RCVTIMEO, 10_000)
    asker.connect(f"tcp://{broker.host}:{broker.key_port}")
    try:
        asker.send(encode_request(1, ServerKey()))
        reply = decode_incoming(asker.recv())
        assert reply.result == {"key": broker.server_key, "fingerprint": broker.fingerprint}  # type: ignore[union-attr]
        assert broker.fingerprint == key_fingerprint(broker.server_key)

        asker.send(encode_request(2, Register(user="sneaky", password="over plaintext")))
        refused = decode_incoming(asker.recv())
        assert refused.error is not None and refused.error.code == ErrorCode.UNKNOWN_OPERATION  # type: ignore[union-attr]
        asker.send(b"garbage")
        assert decode_incoming(asker.recv()).error is not None  # type: ignore[union-attr]
    finally:
        asker.close()


def test_key_files_are_private_and_the_key_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_broker(data)
    assert first.stop() == 0
    secret = data / "broker.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert secret.read_text().strip() not in first.output.text()

    second = start_broker(data)
    assert second.stop() == 0
    assert second.server_key == first.server_key

    shown = subprocess.run(
        [script("zchat-broker"), "--show-key", "--data-dir", str(data)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert f"Broker key: {first.server_key}" in shown.stdout
    assert f"Fingerprint: {first.fingerprint}" in shown.stdout
    assert secret.read_text().strip() not in shown.stdout + shown.stderr


def test_a_secret_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert start_broker(data).stop() == 0
    (data / "broker.key_secret").chmod(0o644)
    refused = subprocess.run(
        [script("zchat-broker"), "--data-dir", str(data), "--port", "0", "--pub-port", "0",
         "--key-port", "0"],
        check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "readable by others" in refused.stderr


def test_secrets_never_reach_the_log_even_at_debug(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    broker = start_broker(tmp_path / "data", "--log-level", "DEBUG")
    alice = WireClient(context, broker)
    sub = subscriber(context, broker, b"")  # everything
    try:
        alice.ok(Register(user="alice", password="hunter2-correct-horse"))
        bad = alice.call(Login(user="alice", password="wrong-guess-battery"))
        assert bad.error is not None and "battery" not in bad.error.message
        session = alice.ok(Login(user="alice", password="hunter2-correct-horse"))["session"]
        room_key = alice.ok(Join(room="room1"))["key"]
        alice.ok(Send(room="room1", text="hello"))
    finally:
        sub.close()
        alice.close()
        assert broker.stop() == 0
    log = broker.output.text()
    secret_key = (broker.data_dir / "broker.key_secret").read_text().strip()
    for secret in ("hunter2-correct-horse", "wrong-guess-battery", session, secret_key):
        assert secret not in log
    assert room_key.hex() not in log and repr(room_key) not in log
