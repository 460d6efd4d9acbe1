"""The one interface the broker core stores through, and an in-memory implementation.

Writes are buffered until `commit`: the shell commits once per batch of
requests, before any reply or publication of that batch leaves, so a reply
always means the data is stored (group commit). Inside a batch each request's
writes sit in a savepoint, so a request that fails half-way is undone alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from zchat.protocol.validation import name_key, name_skeleton


@dataclass(frozen=True, slots=True)
class Account:
    """A registered user: the name as registered and its password hash."""

    name: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class StoredRoom:
    """A room as stored: its name as created, its last sequence number, and the id of the
    newest key it was given (0: none yet)."""

    name: str
    last_seq: int
    kid: int = 0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One entry of a room's stream; ``msg_id`` is the sender's id for it, if any."""

    room: str
    seq: int
    kind: str
    user: str
    ts_ms: int
    text: str
    msg_id: str = ""


@dataclass(frozen=True, slots=True)
class StoredDirect:
    """A direct message; ``id`` numbers them across the broker."""

    id: int
    sender: str
    recipient: str
    ts_ms: int
    text: str
    msg_id: str = ""


class StorageError(Exception):
    """The database failed (disk full, file corrupt, newer schema...)."""


class DuplicateMessage(Exception):
    """The sender already stored a message with this ``msg_id``; ``number`` is its seq or id
    and ``ts_ms`` the time it was accepted, so a retry is answered as the original was."""

    def __init__(self, number: int, ts_ms: int) -> None:
        super().__init__(number, ts_ms)
        self.number = number
        self.ts_ms = ts_ms


class Storage(Protocol):
    """Accounts, rooms, room events, direct messages and resume tokens.

    Names are unique ignoring case, and each is stored with its skeleton so a
    look-alike is found with one lookup. Resume tokens are stored only as hashes.
    """

    def add_account(self, name: str, password_hash: str) -> bool:
        """Store a new account; False if the name (ignoring case) is taken."""
        ...

    def account(self, name: str) -> Account | None:
        """The account of that name, ignoring case."""
        ...

    def account_like(self, name: str) -> str | None:
        """The name of an account that looks like ``name`` (same `name_skeleton`), if any."""
        ...

    def add_room(self, name: str) -> None:
        """Store a new room (the caller knows the name is free)."""
        ...

    def room_like(self, name: str) -> str | None:
        """The name of a room that looks like ``name`` (same `name_skeleton`), if any."""
        ...

    def rooms(self) -> list[StoredRoom]:
        """Every room with its last sequence number and newest key id."""
        ...

    def set_room_kid(self, name: str, kid: int) -> None:
        """Record the id of the room's newest key, before the key is used, so that no id
        names two keys, also across restarts."""
        ...

    def append_event(self, event: StoredEvent) -> None:
        """Add the next event of a room's stream; `DuplicateMessage` if its msg_id is known."""
        ...

    def events(self, room: str, from_seq: int, to_seq: int, limit: int) -> list[StoredEvent]:
        """A room's events with from_seq <= seq <= to_seq, oldest first, at most ``limit``."""
        ...

    def prune_events(self, room: str, before_ts_ms: int, keep_last: int, limit: int) -> int:
        """Delete up to ``limit`` of a room's oldest events that are older than
        ``before_ts_ms`` or not among its last ``keep_last``; returns how many."""
        ...

    def add_direct(self, message: StoredDirect) -> int:
        """Store a direct message (its ``id`` is ignored); returns its id.

        `DuplicateMessage` if the sender already stored one with this msg_id.
        """
        ...

    def undelivered(self, recipient: str, limit: int, after: int = 0) -> list[StoredDirect]:
        """Direct messages to ``recipient`` not yet delivered with an id over ``after``,
        oldest first."""
        ...

    def count_undelivered(self, recipient: str) -> int: ...

    def mark_delivered(self, ids: list[int], recipient: str) -> None:
        """Mark those of ``ids`` that are messages to ``recipient`` as delivered."""
        ...

    def add_resume_token(self, token_hash: str, user: str, expires_ms: int) -> None: ...

    def use_resume_token(self, token_hash: str, now_ms: int, expires_ms: int) -> str | None:
        """The user of a live token, whose expiry moves to ``expires_ms``; else None."""
        ...

    def revoke_resume_token(self, token_hash: str) -> None: ...

    def savepoint(self) -> None:
        """Start one request's writes, to be kept or undone together."""
        ...

    def release_savepoint(self) -> None:
        """Keep the writes since `savepoint` (they are committed with the batch). Never
        raises: a store that cannot refuses to `commit`."""
        ...

    def rollback_to_savepoint(self) -> None:
        """Undo the writes since `savepoint`; the earlier ones stay. Never raises."""
        ...

    def commit(self) -> None:
        """Make every write so far durable; `StorageError` if the store failed since the
        last commit (what it holds may no longer be what was written)."""
        ...

    def close(self) -> None:
        """Commit and release the store."""
        ...


class MemoryStorage:
    """A `Storage` that keeps everything in dicts: for tests of the core, and throwaway brokers."""

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._rooms: dict[str, str] = {}
        self._kids: dict[str, int] = {}
        self._account_skeletons: dict[str, str] = {}
        self._room_skeletons: dict[str, str] = {}
        self._events: dict[str, list[StoredEvent]] = {}
        self._directs: dict[int, StoredDirect] = {}
        self._delivered: set[int] = set()
        self._next_direct = 1
        self._tokens: dict[str, tuple[str, int]] = {}
        self.commits = 0
        self._in_request = False
        self._before_request: tuple[Any, ...] | None = None
        """A copy of everything, taken at a request's first write, for `rollback_to_savepoint`."""

    def add_account(self, name: str, password_hash: str) -> bool:
        key = name_key(name)
        if key in self._accounts:
            return False
        self._before_write()
        self._accounts[key] = Account(name, password_hash)
        self._account_skeletons.setdefault(name_skeleton(name), name)
        return True

    def account_like(self, name: str) -> str | None:
        return self._account_skeletons.get(name_skeleton(name))

    def account(self, name: str) -> Account | None:
        return self._accounts.get(name_key(name))

    def add_room(self, name: str) -> None:
        self._before_write()
        self._rooms[name_key(name)] = name
        self._events[name_key(name)] = []
        self._room_skeletons.setdefault(name_skeleton(name), name)

    def room_like(self, name: str) -> str | None:
        return self._room_skeletons.get(name_skeleton(name))

    def rooms(self) -> list[StoredRoom]:
        return [
            StoredRoom(
                name, self._events[key][-1].seq if self._events[key] else 0, self._kids.get(key, 0)
            )
            for key, name in self._rooms.items()
        ]

    def set_room_kid(self, name: str, kid: int) -> None:
        self._before_write()
        self._kids[name_key(name)] = kid

    def append_event(self, event: StoredEvent) -> None:
        stream = self._events[name_key(event.room)]
        if event.msg_id:
            for earlier in stream:
                if (earlier.user, earlier.msg_id) == (event.user, event.msg_id):
                    raise DuplicateMessage(earlier.seq, earlier.ts_ms)
        self._before_write()
        stream.append(event)

    def events(self, room: str, from_seq: int, to_seq: int, limit: int) -> list[StoredEvent]:
        stream = self._events[name_key(room)]
        return [e for e in stream if from_seq <= e.seq <= to_seq][:limit]

    def prune_events(self, room: str, before_ts_ms: int, keep_last: int, limit: int) -> int:
        stream = self._events[name_key(room)]
        doomed = [
            e for n, e in enumerate(stream)
            if e.ts_ms < before_ts_ms or n < len(stream) - keep_last
        ][:limit]  # fmt: skip
        self._before_write()
        self._events[name_key(room)] = [e for e in stream if e not in doomed]
        return len(doomed)

    def add_direct(self, message: StoredDirect) -> int:
        if message.msg_id:
            for earlier in self._directs.values():
                if (earlier.sender, earlier.msg_id) == (message.sender, message.msg_id):
                    raise DuplicateMessage(earlier.id, earlier.ts_ms)
        self._before_write()
        number, self._next_direct = self._next_direct, self._next_direct + 1
        self._directs[number] = replace(message, id=number)
        return number

    def undelivered(self, recipient: str, limit: int, after: int = 0) -> list[StoredDirect]:
        key = name_key(recipient)
        return [
            m for n, m in sorted(self._directs.items())
            if name_key(m.recipient) == key and n not in self._delivered and n > after
        ][:limit]  # fmt: skip

    def count_undelivered(self, recipient: str) -> int:
        return len(self.undelivered(recipient, limit=len(self._directs)))

    def mark_delivered(self, ids: list[int], recipient: str) -> None:
        self._before_write()
        key = name_key(recipient)
        self._delivered.update(
            n for n in ids if n in self._directs and name_key(self._directs[n].recipient) == key
        )

    def add_resume_token(self, token_hash: str, user: str, expires_ms: int) -> None:
        self._before_write()
        self._tokens[token_hash] = (user, expires_ms)

    def use_resume_token(self, token_hash: str, now_ms: int, expires_ms: int) -> str | None:
        entry = self._tokens.get(token_hash)
        if entry is None or entry[1] < now_ms:
            return None
        self._before_write()
        self._tokens[token_hash] = (entry[0], expires_ms)
        return entry[0]

    def revoke_resume_token(self, token_hash: str) -> None:
        self._before_write()
        self._tokens.pop(token_hash, None)

    def savepoint(self) -> None:
        self._in_request = True

    def release_savepoint(self) -> None:
        self._in_request, self._before_request = False, None

    def rollback_to_savepoint(self) -> None:
        if self._before_request is not None:
            (self._accounts, self._rooms, self._kids, self._account_skeletons,
             self._room_skeletons, self._events, self._directs, self._delivered,
             self._next_direct, self._tokens) = self._before_request  # fmt: skip
        self.release_savepoint()

    def _before_write(self) -> None:
        if self._in_request and self._before_request is None:
            self._before_request = (
                dict(self._accounts), dict(self._rooms), dict(self._kids),
                dict(self._account_skeletons), dict(self._room_skeletons),
                {key: list(stream) for key, stream in self._events.items()},
                dict(self._directs), set(self._delivered), self._next_direct, dict(self._tokens),
            )  # fmt: skip

    def commit(self) -> None:
        self.commits += 1

    def close(self) -> None:
        self.commit()
