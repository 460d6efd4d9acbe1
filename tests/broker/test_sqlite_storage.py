"""SQLite storage against a real file: uniqueness, ordering, and surviving a reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from zchat.broker.sqlite_storage import SqliteStorage, StorageError
from zchat.broker.storage import DuplicateMessage, StoredDirect, StoredEvent, StoredRoom


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
    store.set_room_kid("room1", 5)
    store.close()

    reopened = SqliteStorage(path)
    assert reopened.account("alice") is not None
    assert reopened.rooms() == [StoredRoom("room1", 3, kid=5), StoredRoom("empty", 0)]
    later = reopened.events("room1", from_seq=2, to_seq=99, limit=10)
    assert [e.text for e in later] == ["m2", "m3"]
    assert [e.seq for e in reopened.events("room1", from_seq=1, to_seq=99, limit=2)] == [1, 2]
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


def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE accounts (name_key TEXT PRIMARY KEY, name TEXT NOT NULL,
                               password_hash TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE rooms (room_id INTEGER PRIMARY KEY, name_key TEXT NOT NULL UNIQUE,
                            name TEXT NOT NULL);
        CREATE TABLE events (room_id INTEGER NOT NULL REFERENCES rooms(room_id),
                             seq INTEGER NOT NULL, kind TEXT NOT NULL, user TEXT NOT NULL,
                             ts_ms INTEGER NOT NULL, text TEXT NOT NULL,
                             PRIMARY KEY (room_id, seq)) WITHOUT ROWID;
        INSERT INTO accounts VALUES ('alice', 'alice', 'hash');
        INSERT INTO rooms VALUES (1, 'room1', 'room1');
        INSERT INTO events VALUES (1, 1, 'msg', 'alice', 5, 'from version 1');
        PRAGMA user_version=1;
        """
    )
    old.close()
    store = SqliteStorage(path)
    assert [e.text for e in store.events("room1", 1, 1, 10)] == ["from version 1"]
    assert store.rooms() == [StoredRoom("room1", 1, kid=0)]
    store.append_event(StoredEvent("room1", 2, "msg", "alice", 6, "new", msg_id="x"))
    with pytest.raises(DuplicateMessage):
        store.append_event(StoredEvent("room1", 3, "msg", "alice", 7, "new", msg_id="x"))
    store.close()


def test_message_ids_deduplicate_across_a_reopen_per_user(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStorage(path)
    store.add_room("room1")
    store.append_event(StoredEvent("room1", 1, "msg", "alice", 1, "hi", msg_id="m1"))
    store.append_event(StoredEvent("room1", 2, "msg", "bob", 1, "hi", msg_id="m1"))
    store.append_event(StoredEvent("room1", 3, "msg", "bob", 1, "no id"))
    store.append_event(StoredEvent("room1", 4, "msg", "bob", 1, "no id"))
    store.close()
    reopened = SqliteStorage(path)
    with pytest.raises(DuplicateMessage) as duplicate:
        reopened.append_event(StoredEvent("room1", 5, "msg", "alice", 2, "hi", msg_id="m1"))
    assert (duplicate.value.number, duplicate.value.ts_ms) == (1, 1)
    reopened.close()


def test_pruning_keeps_the_newest_and_drops_the_old(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "db.sqlite3")
    store.add_room("room1")
    for seq in range(1, 101):
        store.append_event(StoredEvent("room1", seq, "msg", "alice", seq * 1000, f"m{seq}"))
    assert store.prune_events("room1", before_ts_ms=0, keep_last=60, limit=25) == 25
    assert store.prune_events("room1", before_ts_ms=0, keep_last=60, limit=25) == 15
    assert store.prune_events("room1", before_ts_ms=0, keep_last=60, limit=25) == 0
    assert store.prune_events("room1", before_ts_ms=50_500, keep_last=1000, limit=100) == 10
    assert [e.seq for e in store.events("room1", 1, 100, 1)] == [51]
    assert store.rooms() == [StoredRoom("room1", 100)], "the sequence goes on after pruning"
    store.close()


def test_direct_messages_and_resume_tokens_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStorage(path)
    first = store.add_direct(StoredDirect(0, "alice", "Bob", 1, "one", msg_id="d1"))
    second = store.add_direct(StoredDirect(0, "alice", "Bob", 2, "two"))
    with pytest.raises(DuplicateMessage) as duplicate:
        store.add_direct(StoredDirect(0, "alice", "Bob", 3, "one again", msg_id="d1"))
    assert (duplicate.value.number, duplicate.value.ts_ms) == (first, 1)
    store.add_resume_token("hash-1", "alice", expires_ms=10_000)
    store.close()

    reopened = SqliteStorage(path)
    assert reopened.count_undelivered("bob") == 2
    assert [m.id for m in reopened.undelivered("BOB", 10)] == [first, second]
    assert [m.id for m in reopened.undelivered("bob", 10, after=first)] == [second]
    reopened.mark_delivered([first, second], "alice")
    assert reopened.count_undelivered("bob") == 2, "only the recipient's session marks"
    reopened.mark_delivered([first], "BOB")
    assert [m.text for m in reopened.undelivered("bob", 10)] == ["two"]
    assert reopened.use_resume_token("hash-1", now_ms=5_000, expires_ms=20_000) == "alice"
    assert reopened.use_resume_token("hash-1", now_ms=15_000, expires_ms=30_000) == "alice"
    assert reopened.use_resume_token("hash-1", now_ms=31_000, expires_ms=40_000) is None
    reopened.revoke_resume_token("hash-1")
    assert reopened.use_resume_token("hash-1", now_ms=0, expires_ms=1) is None
    reopened.close()


def test_after_a_failed_statement_nothing_is_committed(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStorage(path)
    store.add_room("room1")
    store.commit()
    store._db.execute(  # a disk that fails on one write; SQLite may then undo more than it
        "CREATE TEMP TRIGGER fail BEFORE INSERT ON main.events WHEN NEW.text = 'boom'"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    store.append_event(StoredEvent("room1", 1, "msg", "alice", 1, "written"))
    with pytest.raises(StorageError, match="disk on fire"):
        store.append_event(StoredEvent("room1", 2, "msg", "alice", 2, "boom"))
    with pytest.raises(StorageError, match="disk on fire"):
        store.commit()
    store.close()
    assert SqliteStorage(path).rooms() == [StoredRoom("room1", 0)], "nothing after the commit"


def test_a_kept_savepoint_waits_for_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStorage(path)
    reader = sqlite3.connect(path)
    store.savepoint()
    store.add_account("alice", "hash")
    store.release_savepoint()
    assert reader.execute("SELECT COUNT(*) FROM accounts").fetchone() == (0,)
    store.commit()
    assert reader.execute("SELECT COUNT(*) FROM accounts").fetchone() == (1,)
    reader.close()
    store.close()
