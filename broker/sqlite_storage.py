"""`Storage` in one SQLite file, in WAL mode.

``synchronous=NORMAL`` with WAL makes a commit survive the broker being killed
(it is in the WAL before `commit` returns); only a power cut can lose the last
commits. sqlite3 errors are mapped to `StorageError` at this boundary.

A request's writes sit in a savepoint, opened by its first write, so a request
that fails half-way is undone alone. After any failed statement the store
refuses to commit: SQLite may have rolled back the whole transaction on its
own (a full disk, an I/O error), and a commit would then acknowledge writes
that are gone.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zchat.protocol.validation import name_key, name_skeleton

from .storage import (
    Account,
    DuplicateMessage,
    StorageError,
    StoredDirect,
    StoredEvent,
    StoredRoom,
)

__all__ = ["SqliteStorage", "StorageError"]

SCHEMA_VERSION = 4

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
    ALTER TABLE rooms ADD COLUMN kid INTEGER NOT NULL DEFAULT 0;
    """,
    4: """
    ALTER TABLE accounts ADD COLUMN skeleton TEXT;
    UPDATE accounts SET skeleton = zchat_skeleton(name);
    ALTER TABLE rooms ADD COLUMN skeleton TEXT;
    UPDATE rooms SET skeleton = zchat_skeleton(name);
    CREATE INDEX accounts_skeleton ON accounts (skeleton);
    CREATE INDEX rooms_skeleton ON rooms (skeleton);
    """,
}
"""What turns schema version N-1 into N; a new database starts from `_SCHEMA` at version 1.

Version 3 stores each room's newest key id. Version 4 stores each name's skeleton
(`name_skeleton`, as the SQL function ``zchat_skeleton``), indexed, so a look-alike
of an existing name is one lookup; the index is not unique, as names stored before
it may already look alike."""

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


def _check_intact(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a damaged database at start (``quick_check`` reads every page): damage
    found later would fail requests, such as every login, one by one."""
    try:
        verdict = [str(row[0]) for row in db.execute("PRAGMA quick_check(1)")]
    except sqlite3.DatabaseError as exc:
        verdict = [str(exc)]
    if verdict != ["ok"]:
        found = " ".join(verdict[0].replace("*** in database main ***", "").split())
        raise StorageError(
            f"{path} is damaged ({found}); restore it from a backup, or move it away to start "
            "with an empty one"
        )


@contextmanager
def _private_files(path: Path) -> Iterator[None]:
    """Only the owner may read the database: existing files are made 0600, and new ones
    are created so (SQLite gives its WAL and shared-memory files the database's mode)."""
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if existing.exists() and existing.stat().st_mode & 0o077:
            existing.chmod(0o600)
    before = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(before)


class SqliteStorage:
    """Accounts, rooms and events in ``path``; one connection, used from the event loop."""

    def __init__(self, path: Path) -> None:
        self._failure = ""
        """What failed first, if anything did: the store no longer commits."""
        self._in_request = False
        self._savepoint_open = False
        self._rooms_added: list[str] = []
        """Rooms added inside the open savepoint, forgotten again if it is rolled back."""
        try:
            with _private_files(path):
                self._open(path)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open {path}: {exc}") from exc

    def _open(self, path: Path) -> None:
        """Connect, and bring the schema to the current version."""
        self._db = sqlite3.connect(path, isolation_level="DEFERRED")
        _check_intact(self._db, path)
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

    def add_account(self, name: str, password_hash: str) -> bool:
        try:
            self._write(
                "INSERT INTO accounts (name_key, name, password_hash, skeleton)"
                " VALUES (?, ?, ?, ?)",
                (name_key(name), name, password_hash, name_skeleton(name)),
                conflict_expected=True,
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def account(self, name: str) -> Account | None:
        rows = self._read(
            "SELECT name, password_hash FROM accounts WHERE name_key = ?", (name_key(name),)
        )
        return Account(rows[0][0], rows[0][1]) if rows else None

    def account_like(self, name: str) -> str | None:
        rows = self._read(
            "SELECT name FROM accounts WHERE skeleton = ? LIMIT 1", (name_skeleton(name),)
        )
        return str(rows[0][0]) if rows else None

    def room_like(self, name: str) -> str | None:
        rows = self._read(
            "SELECT name FROM rooms WHERE skeleton = ? LIMIT 1", (name_skeleton(name),)
        )
        return str(rows[0][0]) if rows else None

    def add_room(self, name: str) -> None:
        key = name_key(name)
        cursor = self._write(
            "INSERT INTO rooms (name_key, name, skeleton) VALUES (?, ?, ?)",
            (key, name, name_skeleton(name)),
        )
        assert cursor.lastrowid is not None
        self._room_ids[key] = cursor.lastrowid
        if self._savepoint_open:
            self._rooms_added.append(key)

    def rooms(self) -> list[StoredRoom]:
        rows = self._read(
            "SELECT r.name,"
            " COALESCE((SELECT MAX(seq) FROM events e WHERE e.room_id = r.room_id), 0), r.kid"
            " FROM rooms r ORDER BY r.room_id"
        )
        return [StoredRoom(name, last_seq, kid) for name, last_seq, kid in rows]

    def set_room_kid(self, name: str, kid: int) -> None:
        self._write(
            "UPDATE rooms SET kid = ? WHERE room_id = ?", (kid, self._room_ids[name_key(name)])
        )

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
        rows = self._read(
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
            return self._write(insert, row, conflict_expected=True)
        except sqlite3.IntegrityError as exc:
            earlier = self._read(find_earlier, key) if msg_id else []
            if earlier:
                raise DuplicateMessage(earlier[0][0], earlier[0][1]) from exc
            raise self._failed(f"cannot store message: {exc}") from exc

    def undelivered(self, recipient: str, limit: int, after: int = 0) -> list[StoredDirect]:
        rows = self._read(
            "SELECT id, sender, recipient, ts_ms, text, COALESCE(msg_id, '') FROM directs"
            " WHERE recipient_key = ? AND delivered = 0 AND id > ? ORDER BY id LIMIT ?",
            (name_key(recipient), after, limit),
        )
        return [StoredDirect(*row) for row in rows]

    def count_undelivered(self, recipient: str) -> int:
        rows = self._read(
            "SELECT COUNT(*) FROM directs WHERE recipient_key = ? AND delivered = 0",
            (name_key(recipient),),
        )
        return int(rows[0][0])

    def mark_delivered(self, ids: list[int], recipient: str) -> None:
        key = name_key(recipient)
        self._write_many(
            "UPDATE directs SET delivered = 1 WHERE id = ? AND recipient_key = ? AND delivered = 0",
            [(i, key) for i in ids],
        )

    def add_resume_token(self, token_hash: str, user: str, expires_ms: int) -> None:
        self._write(
            "INSERT OR REPLACE INTO resume_tokens (token_hash, user, expires_ms) VALUES (?, ?, ?)",
            (token_hash, user, expires_ms),
        )

    def use_resume_token(self, token_hash: str, now_ms: int, expires_ms: int) -> str | None:
        rows = self._read(
            "SELECT user FROM resume_tokens WHERE token_hash = ? AND expires_ms >= ?",
            (token_hash, now_ms),
        )
        if not rows:
            return None
        self._write(
            "UPDATE resume_tokens SET expires_ms = ? WHERE token_hash = ?", (expires_ms, token_hash)
        )
        return str(rows[0][0])

    def revoke_resume_token(self, token_hash: str) -> None:
        self._write("DELETE FROM resume_tokens WHERE token_hash = ?", (token_hash,))

    def savepoint(self) -> None:
        """Start one request: its writes are kept or undone together. Cheap when it writes
        nothing: the SQL savepoint is opened by the first write."""
        self._in_request = True

    def release_savepoint(self) -> None:
        """Keep the request's writes (committed with the rest of the batch). Never raises:
        if that fails, `commit` refuses."""
        if self._savepoint_open:
            try:
                self._db.execute("RELEASE request")
            except sqlite3.Error as exc:
                self._failed(f"cannot keep a request's writes: {exc}")
        self._end_request()

    def rollback_to_savepoint(self) -> None:
        """Undo the request's writes. Never raises: if even that fails, `commit` refuses."""
        if self._savepoint_open:
            try:
                self._db.execute("ROLLBACK TO request")
                self._db.execute("RELEASE request")
            except sqlite3.Error as exc:
                self._failed(f"cannot undo a request's writes: {exc}")
            for key in self._rooms_added:
                del self._room_ids[key]
        self._end_request()

    def _end_request(self) -> None:
        self._in_request = self._savepoint_open = False
        self._rooms_added.clear()

    def _failed(self, message: str) -> StorageError:
        """Remember the first failure (no commit after it) and make its error."""
        self._failure = self._failure or message
        return StorageError(message)

    def _read(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise self._failed(f"cannot read: {exc}") from exc

    def _write(
        self, sql: str, parameters: tuple[object, ...], *, conflict_expected: bool = False
    ) -> sqlite3.Cursor:
        """Run one write, inside the request's savepoint if a request is open.

        With ``conflict_expected`` a constraint violation is the caller's to handle (it
        undoes only its own statement); any other error is a failure of the store."""
        try:
            self._open_savepoint()
            return self._db.execute(sql, parameters)
        except sqlite3.Error as exc:
            if conflict_expected and isinstance(exc, sqlite3.IntegrityError):
                raise
            raise self._failed(f"cannot write: {exc}") from exc

    def _write_many(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        try:
            self._open_savepoint()
            self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise self._failed(f"cannot write: {exc}") from exc

    def _open_savepoint(self) -> None:
        if self._in_request and not self._savepoint_open:
            if not self._db.in_transaction:
                self._db.execute("BEGIN")  # else the savepoint's release would commit
            self._db.execute("SAVEPOINT request")
            self._savepoint_open = True

    def commit(self) -> None:
        if self._failure:
            raise StorageError(self._failure)  # what was written may be gone: never commit
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            raise self._failed(f"cannot commit: {exc}") from exc

    def close(self) -> None:
        """Commit (unless something failed: then undo what is not committed) and close."""
        try:
            if self._failure:
                self._db.rollback()
            else:
                self._db.commit()
        except sqlite3.Error as exc:
            raise self._failed(f"cannot commit: {exc}") from exc
        finally:
            self._db.close()
