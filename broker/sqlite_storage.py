"""`Storage` in one SQLite file, in WAL mode.

``synchronous=NORMAL`` with WAL makes a commit survive the broker being killed
(it is in the WAL before `commit` returns); only a power cut can lose the last
commits. sqlite3 errors are mapped to `StorageError` at this boundary.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from zchat.protocol.validation import name_key

from .storage import Account, StoredEvent, StoredRoom

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name_key      TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms (
    room_id  INTEGER PRIMARY KEY,
    name_key TEXT NOT NULL UNIQUE,
    name     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    room_id INTEGER NOT NULL REFERENCES rooms(room_id),
    seq     INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    user    TEXT NOT NULL,
    ts_ms   INTEGER NOT NULL,
    text    TEXT NOT NULL,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;
"""


class StorageError(Exception):
    """The database failed (disk full, file corrupt, newer schema...)."""


class SqliteStorage:
    """Accounts, rooms and events in ``path``; one connection, used from the event loop."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level="DEFERRED")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{path} was written by a newer zchat (schema {version} > {SCHEMA_VERSION})"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.commit()
            self._room_ids: dict[str, int] = dict(
                self._db.execute("SELECT name_key, room_id FROM rooms")
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {path}: {exc}") from exc

    def add_account(self, name: str, password_hash: str) -> bool:
        try:
            self._db.execute(
                "INSERT INTO accounts (name_key, name, password_hash) VALUES (?, ?, ?)",
                (name_key(name), name, password_hash),
            )
        except sqlite3.IntegrityError:
            return False
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store account: {exc}") from exc
        return True

    def account(self, name: str) -> Account | None:
        row = self._db.execute(
            "SELECT name, password_hash FROM accounts WHERE name_key = ?", (name_key(name),)
        ).fetchone()
        return Account(row[0], row[1]) if row else None

    def add_room(self, name: str) -> None:
        key = name_key(name)
        try:
            cursor = self._db.execute(
                "INSERT INTO rooms (name_key, name) VALUES (?, ?)", (key, name)
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store room: {exc}") from exc
        assert cursor.lastrowid is not None
        self._room_ids[key] = cursor.lastrowid

    def rooms(self) -> list[StoredRoom]:
        rows = self._db.execute(
            "SELECT r.name,"
            " COALESCE((SELECT MAX(seq) FROM events e WHERE e.room_id = r.room_id), 0)"
            " FROM rooms r ORDER BY r.room_id"
        )
        return [StoredRoom(name, last_seq) for name, last_seq in rows]

    def append_event(self, event: StoredEvent) -> None:
        try:
            self._db.execute(
                "INSERT INTO events (room_id, seq, kind, user, ts_ms, text)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    self._room_ids[name_key(event.room)],
                    event.seq,
                    event.kind,
                    event.user,
                    event.ts_ms,
                    event.text,
                ),
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store event: {exc}") from exc

    def events(self, room: str, after_seq: int, limit: int) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT seq, kind, user, ts_ms, text FROM events"
            " WHERE room_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (self._room_ids[name_key(room)], after_seq, limit),
        )
        return [StoredEvent(room, *row) for row in rows]

    def commit(self) -> None:
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot commit: {exc}") from exc

    def close(self) -> None:
        try:
            self._db.commit()
        finally:
            self._db.close()
