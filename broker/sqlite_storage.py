"""`Storage` in one SQLite file, in WAL mode.

``synchronous=NORMAL`` with WAL makes a commit survive the broker being killed
(it is in the WAL before `commit` returns); only a power cut can lose the last
commits. sqlite3 errors are mapped to `StorageError` at this boundary.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from zchat.protocol.validation import name_key, name_skeleton

from .storage import Account, DuplicateMessage, StoredDirect, StoredEvent, StoredRoom

SCHEMA_VERSION = 3

_SCHEMA = """
-- version 1, as first shipped; later versions are reached through _MIGRATIONS
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

_MIGRATIONS = {
    2: """
    ALTER TABLE events ADD COLUMN msg_id TEXT;
    """,
    3: """
    ALTER TABLE accounts ADD COLUMN skeleton TEXT;
    UPDATE accounts SET skeleton = zchat_skeleton(name);
    ALTER TABLE rooms ADD COLUMN skeleton TEXT;
    UPDATE rooms SET skeleton = zchat_skeleton(name);
    CREATE INDEX accounts_skeleton ON accounts (skeleton);
    CREATE INDEX rooms_skeleton ON rooms (skeleton);
    """,
}
"""What turns schema version N-1 into N; a new database starts from `_SCHEMA` at version 1.

Version 3 stores each name's skeleton (`name_skeleton`, as the SQL function
``zchat_skeleton``), indexed, so a look-alike of an existing name is one lookup;
the index is not unique, as names stored before it may already look alike."""

_SCHEMA_V2 = """
CREATE UNIQUE INDEX IF NOT EXISTS events_msg_id ON events (room_id, user, msg_id)
    WHERE msg_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS directs (
    id            INTEGER PRIMARY KEY,
    sender        TEXT NOT NULL,
    recipient_key TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    ts_ms         INTEGER NOT NULL,
    text          TEXT NOT NULL,
    msg_id        TEXT,
    delivered     INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS directs_msg_id ON directs (sender, msg_id)
    WHERE msg_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS directs_undelivered ON directs (recipient_key, id)
    WHERE delivered = 0;
CREATE TABLE IF NOT EXISTS resume_tokens (
    token_hash TEXT PRIMARY KEY,
    user       TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
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
            self._db.create_function("zchat_skeleton", 1, name_skeleton, deterministic=True)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{path} was written by a newer zchat (schema {version} > {SCHEMA_VERSION})"
                )
            if version == 0:
                self._db.executescript(_SCHEMA)
                version = 1
            for step in range(version + 1, SCHEMA_VERSION + 1):
                self._db.executescript(_MIGRATIONS[step])
            self._db.executescript(_SCHEMA_V2)
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
                "INSERT INTO accounts (name_key, name, password_hash, skeleton)"
                " VALUES (?, ?, ?, ?)",
                (name_key(name), name, password_hash, name_skeleton(name)),
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

    def account_like(self, name: str) -> str | None:
        row = self._db.execute(
            "SELECT name FROM accounts WHERE skeleton = ? LIMIT 1", (name_skeleton(name),)
        ).fetchone()
        return str(row[0]) if row else None

    def room_like(self, name: str) -> str | None:
        row = self._db.execute(
            "SELECT name FROM rooms WHERE skeleton = ? LIMIT 1", (name_skeleton(name),)
        ).fetchone()
        return str(row[0]) if row else None

    def add_room(self, name: str) -> None:
        key = name_key(name)
        try:
            cursor = self._db.execute(
                "INSERT INTO rooms (name_key, name, skeleton) VALUES (?, ?, ?)",
                (key, name, name_skeleton(name)),
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
        room_id = self._room_ids[name_key(event.room)]
        self._insert_once(
            "INSERT INTO events (room_id, seq, kind, user, ts_ms, text, msg_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (room_id, event.seq, event.kind, event.user, event.ts_ms, event.text,
             event.msg_id or None),
            event.msg_id,
            "SELECT seq, ts_ms FROM events WHERE room_id = ? AND user = ? AND msg_id = ?",
            (room_id, event.user, event.msg_id),
        )  # fmt: skip

    def events(self, room: str, from_seq: int, to_seq: int, limit: int) -> list[StoredEvent]:
        rows = self._db.execute(
            "SELECT seq, kind, user, ts_ms, text, COALESCE(msg_id, '') FROM events"
            " WHERE room_id = ? AND seq BETWEEN ? AND ? ORDER BY seq LIMIT ?",
            (self._room_ids[name_key(room)], from_seq, to_seq, limit),
        )
        return [StoredEvent(room, *row) for row in rows]

    def prune_events(self, room: str, before_ts_ms: int, keep_last: int, limit: int) -> int:
        room_id = self._room_ids[name_key(room)]
        # Only the `limit` oldest events are looked at: times grow with seq, so if these are
        # young enough to keep, so is everything after them.
        cursor = self._write(
            "DELETE FROM events WHERE room_id = ? AND seq IN"
            " (SELECT seq FROM events WHERE room_id = ? ORDER BY seq LIMIT ?)"
            " AND (ts_ms < ? OR seq <= (SELECT MAX(seq) FROM events WHERE room_id = ?) - ?)",
            (room_id, room_id, limit, before_ts_ms, room_id, keep_last),
        )
        return cursor.rowcount

    def add_direct(self, message: StoredDirect) -> int:
        cursor = self._insert_once(
            "INSERT INTO directs (sender, recipient_key, recipient, ts_ms, text, msg_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (message.sender, name_key(message.recipient), message.recipient, message.ts_ms,
             message.text, message.msg_id or None),
            message.msg_id,
            "SELECT id, ts_ms FROM directs WHERE sender = ? AND msg_id = ?",
            (message.sender, message.msg_id),
        )  # fmt: skip
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _insert_once(
        self,
        insert: str,
        row: tuple[object, ...],
        msg_id: str,
        find_earlier: str,
        key: tuple[object, ...],
    ) -> sqlite3.Cursor:
        """Insert a message row; if its sender already stored ``msg_id`` (the unique index
        refuses the row), raise `DuplicateMessage` with the earlier row's number and time."""
        try:
            return self._db.execute(insert, row)
        except sqlite3.IntegrityError as exc:
            earlier = self._db.execute(find_earlier, key).fetchone() if msg_id else None
            if earlier:
                raise DuplicateMessage(earlier[0], earlier[1]) from exc
            raise StorageError(f"cannot store message: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"cannot store message: {exc}") from exc

    def undelivered(self, recipient: str, limit: int) -> list[StoredDirect]:
        rows = self._db.execute(
            "SELECT id, sender, recipient, ts_ms, text, COALESCE(msg_id, '') FROM directs"
            " WHERE recipient_key = ? AND delivered = 0 ORDER BY id LIMIT ?",
            (name_key(recipient), limit),
        )
        return [StoredDirect(*row) for row in rows]

    def count_undelivered(self, recipient: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM directs WHERE recipient_key = ? AND delivered = 0",
            (name_key(recipient),),
        ).fetchone()
        return int(row[0])

    def mark_delivered(self, ids: list[int]) -> None:
        self._write_many("UPDATE directs SET delivered = 1 WHERE id = ?", [(i,) for i in ids])

    def add_resume_token(self, token_hash: str, user: str, expires_ms: int) -> None:
        self._write(
            "INSERT OR REPLACE INTO resume_tokens (token_hash, user, expires_ms) VALUES (?, ?, ?)",
            (token_hash, user, expires_ms),
        )

    def use_resume_token(self, token_hash: str, now_ms: int, expires_ms: int) -> str | None:
        row = self._db.execute(
            "SELECT user FROM resume_tokens WHERE token_hash = ? AND expires_ms >= ?",
            (token_hash, now_ms),
        ).fetchone()
        if row is None:
            return None
        self._write(
            "UPDATE resume_tokens SET expires_ms = ? WHERE token_hash = ?", (expires_ms, token_hash)
        )
        return str(row[0])

    def revoke_resume_token(self, token_hash: str) -> None:
        self._write("DELETE FROM resume_tokens WHERE token_hash = ?", (token_hash,))

    def _write(self, sql: str, parameters: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write: {exc}") from exc

    def _write_many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write: {exc}") from exc

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
