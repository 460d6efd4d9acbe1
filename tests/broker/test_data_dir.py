"""The data directory: one broker at a time, private files, and a damaged database refused."""

from __future__ import annotations

import signal
import sqlite3
import stat
import subprocess
from pathlib import Path

import zmq

from tests.processes import script, start_broker
from tests.wire import WireClient
from zchat.protocol import Join, Send


def run_broker_command(data: Path) -> subprocess.CompletedProcess[str]:
    """`zchat-broker` on free ports, expected to refuse at once."""
    return subprocess.run(
        [script("zchat-broker"), "--data-dir", str(data), "--host", "127.0.0.1",
         "--port", "0", "--pub-port", "0", "--key-port", "0"],
        check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_a_second_broker_on_the_same_data_dir_refuses_to_start(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    data = tmp_path / "data"
    first = start_broker(data)
    try:
        refused = run_broker_command(data)
        assert refused.returncode == 1
        [line] = [line for line in refused.stderr.splitlines() if "INFO" not in line]
        assert line.startswith("Error: another broker is using")
        assert str(data) in line
        assert f"pid {first.process.pid}, listening on 127.0.0.1:{first.port}" in line
        client = WireClient(context, first)  # the first broker goes on undisturbed
        client.sign_up("alice")
        client.ok(Join(room="room1"))
        assert client.ok(Send(room="room1", text="still mine"))["seq"] == 2
        client.close()
    finally:
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert start_broker(data).stop() == 0, "the kernel dropped the killed broker's lock"


def test_the_data_dir_and_the_database_files_are_private(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    data = tmp_path / "data"
    assert start_broker(data).stop() == 0
    data.chmod(0o755)  # as an older broker, or a careless operator, left them
    (data / "zchat.sqlite3").chmod(0o644)
    broker = start_broker(data)
    client = WireClient(context, broker)
    try:
        client.sign_up("alice")  # writes: the WAL is in use
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        files = sorted(data.glob("zchat.sqlite3*"))
        assert [f.name for f in files] == [
            "zchat.sqlite3",
            "zchat.sqlite3-shm",
            "zchat.sqlite3-wal",
        ]
        assert [stat.S_IMODE(f.stat().st_mode) for f in files] == [0o600] * 3
    finally:
        client.close()
        assert broker.stop() == 0


def test_a_damaged_database_is_refused_at_start_in_one_line(
    tmp_path: Path, context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    data = tmp_path / "data"
    broker = start_broker(data)
    client = WireClient(context, broker)
    client.sign_up("alice")
    client.close()
    assert broker.stop() == 0
    database = data / "zchat.sqlite3"
    with sqlite3.connect(database) as db:
        [(page,)] = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'accounts'")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with database.open("r+b") as file:  # the accounts table's page, past its header
        file.seek((page - 1) * page_size + 8)
        file.write(b"\xa5" * (page_size - 8))

    refused = run_broker_command(data)
    assert refused.returncode == 1
    [line] = [line for line in refused.stderr.splitlines() if "INFO" not in line]
    assert line.startswith(f"Error: {database} is damaged")
