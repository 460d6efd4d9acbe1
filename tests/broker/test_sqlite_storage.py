"""SQLite storage against a real file: uniqueness, ordering, and surviving a reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from zchat.broker.sqlite_storage import SqliteStorage, StorageError
from zchat.broker.storage import StoredEvent, StoredRoom


def test_accounts_are_unique_ignoring_case_and_keep_their_spelling(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "db.sqlite3")
    assert store.add_account("Alice", "h1")
    assert not store.add_account("alice", "h2")
    account = store.account("ALICE")
    assert account is not None and (account.name, account.password_hash) == ("Alice", "h1")
    assert store.account("bob") is None
    store.close()


def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStorage(path)
    store.add_account("alice", "hash")
    store.add_room("room1")
    store.add_room("empty")
    for seq in (1, 2, 3):
        store.append_event(StoredEvent("room1", seq, "msg", "alice", 1000 + seq, f"m{seq}"))
    store.close()

    reopened = SqliteStorage(path)
    assert reopened.account("alice") is not None
    assert reopened.rooms() == [StoredRoom("room1", 3), StoredRoom("empty", 0)]
    assert [e.text for e in reopened.events("room1", after_seq=1, limit=10)] == ["m2", "m3"]
    assert [e.seq for e in reopened.events("room1", after_seq=0, limit=2)] == [1, 2]
    reopened.close()


def test_uncommitted_writes_are_not_visible_to_another_reader(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStorage(path)
    store.add_account("alice", "hash")
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT COUNT(*) FROM accounts").fetchone() == (0,)
    store.commit()
    assert reader.execute("SELECT COUNT(*) FROM accounts").fetchone() == (1,)
    reader.close()
    store.close()


def test_database_uses_wal(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "db.sqlite3")
    store.close()
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_a_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StorageError, match="newer zchat"):
        SqliteStorage(path)


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        SqliteStorage(path)
