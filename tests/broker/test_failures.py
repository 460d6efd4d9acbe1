"""Clean failures: every request gets one reply with a stable code, and the log stays small."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import msgpack
import pytest
import zmq

from tests.processes import RunningBroker, start_broker
from tests.wire import WireClient
from zchat.broker.repeated_log import RepeatedLog
from zchat.protocol import ErrorCode, Login, Ping, Register


def test_server_key_on_the_request_port_is_unknown_op_and_logs_nothing(
    context: zmq.Context[zmq.Socket[bytes]], broker: RunningBroker
) -> None:
    client = WireClient(context, broker)
    try:
        for n in range(200):
            client.send_raw(msgpack.packb({"v": 1, "id": n, "op": "server_key"}))
        for n in range(200):
            reply = client.reply()
            assert reply.request_id == n
            assert reply.error is not None and reply.error.code == ErrorCode.UNKNOWN_OPERATION
            assert "key service" in reply.error.message
        client.call(Ping())  # a marker: everything before it was handled
    finally:
        client.close()
    assert "Traceback" not in broker.output.text()
    assert " failed" not in broker.output.text()


def test_a_repeated_failure_is_logged_once_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    log = RepeatedLog(logging.getLogger("test.repeated"), interval_ms=60_000)
    with caplog.at_level(logging.WARNING, "test.repeated"):
        for n in range(1000):
            try:
                raise ValueError(n)
            except ValueError:
                log.report_exception("send: ValueError", 1_000 + n, "send failed")
        log.report("other", 2_000, "another kind is logged at once")
        log.report_exception("send: ValueError", 61_000, "send failed")
        log.report_exception("send: ValueError", 61_001, "send failed")
        log.flush(70_000)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "send failed",
        "another kind is logged at once",
        "999 more like this in the last 60 s: send: ValueError",
        "send failed",
        "1 more like this in the last 9 s: send: ValueError",
    ]
    assert caplog.records[0].exc_info is not None


def test_a_login_whose_check_throws_is_answered_and_frees_its_slot(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    data = tmp_path / "data"
    first = start_broker(data)
    client = WireClient(context, first)
    client.ok(Register(user="alice", password="a good password"))
    client.close()
    assert first.stop() == 0
    with sqlite3.connect(data / "zchat.sqlite3") as db:  # a hash the hasher cannot even read
        db.execute("UPDATE accounts SET password_hash = '$argon2id$v=19$m=65536,t=3,p=4$é'")
    db.close()

    broker = start_broker(data, "--pending-auth-per-address", "1")
    client = WireClient(context, broker)
    try:
        for _ in range(3):  # each answered at once; the one waiting slot is free again
            reply = client.call(Login(user="alice", password="a good password"))
            assert reply.error is not None and reply.error.code == ErrorCode.INTERNAL_ERROR
    finally:
        client.close()
        assert broker.stop() == 0
    assert broker.output.text().count("Traceback") == 1
