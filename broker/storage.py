"""The one interface the broker core stores through, and an in-memory implementation.

Writes are buffered until `commit`: the shell commits once per batch of
requests, before any reply or publication of that batch leaves, so a reply
always means the data is stored (group commit).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Protocol

from zchat.protocol.validation import name_key, name_skeleton


@dataclass(frozen=True, slots=True)
class Account:
    """A registered user: the name as registered and its password hash."""

    name: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class StoredRoom:
    """A room as stored: its name as created and its last sequence number."""

    name: str
    last_seq: int


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
        """Every room with its last sequence number."""
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

    def undelivered(self, recipient: str, limit: int) -> list[StoredDirect]:
        """Direct messages to ``recipient`` not yet delivered, oldest first."""
        ...

    def count_undelivered(self, recipient: str) -> int: ...

    def mark_delivered(self, ids: list[int]) -> None: ...

    def add_resume_token(self, token_hash: str, user: str, expires_ms: int) -> None: ...

    def use_resume_token(self, token_hash: str, now_ms: int, expires_ms: int) -> str | None:
        """The user of a live token, whose expiry moves to ``expires_ms``; else None."""
        ...

    def revoke_resume_token(self, token_hash: str) -> None: ...

    def commit(self) -> None:
        """Make every write so far durable."""
        ...

    def close(self) -> None:
        """Commit and release the store."""
        ...


class MemoryStorage:
    """A `Storage` that keeps everything in dicts: for tests of the core, and throwaway brokers."""

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._rooms: dict[str, str] = {}
        self._account_skeletons: dict[str, str] = {}
        self._room_skeletons: dict[str, str] = {}
        self._events: dict[str, list[StoredEvent]] = {}
        self._directs: dict[int, StoredDirect] = {}
        self._delivered: set[int] = set()
        self._direct_ids = itertools.count(1)
        self._tokens: dict[str, tuple[str, int]] = {}
        self.commits = 0

    def add_account(self, name: str, password_hash: str) -> bool:
        key = name_key(name)
        if key in self._accounts:
            return False
        self._accounts[key] = Account(name, password_hash)
        self._account_skeletons.setdefault(name_skeleton(name), name)
        return True

    def account_like(self, name: str) -> str | None:
        return self._account_skeletons.get(name_skeleton(name))

    def account(self, name: str) -> Account | None:
        return self._accounts.get(name_key(name))

    def add_room(self, name: str) -> None:
        self._rooms[name_key(name)] = name
        self._events[name_key(name)] = []
        self._room_skeletons.setdefault(name_skeleton(name), name)

    def room_like(self, name: str) -> str | None:
        return self._room_skeletons.get(name_skeleton(name))

    def rooms(self) -> list[StoredRoom]:
        return [
            StoredRoom(name, self._events[key][-1].seq if self._events[key] else 0)
            for key, name in self._rooms.items()
        ]

    def append_event(self, event: StoredEvent) -> None:
        stream = self._events[name_key(event.room)]
        if event.msg_id:
            for earlier in stream:
                if (earlier.user, earlier.msg_id) == (event.user, event.msg_id):
                    raise DuplicateMessage(earlier.seq, earlier.ts_ms)
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
        self._events[name_key(room)] = [e for e in stream if e not in doomed]
        return len(doomed)

    def add_direct(self, message: StoredDirect) -> int:
        if message.msg_id:
            for earlier in self._directs.values():
                if (earlier.sender, earlier.msg_id) == (message.sender, message.msg_id):
                    raise DuplicateMessage(earlier.id, earlier.ts_ms)
        number = next(self._direct_ids)
        self._directs[number] = replace(message, id=number)
        return number

    def undelivered(self, recipient: str, limit: int) -> list[StoredDirect]:
        key = name_key(recipient)
        return [
            m for n, m in sorted(self._directs.items())
            if name_key(m.recipient) == key and n not in self._delivered
        ][:limit]  # fmt: skip

    def count_undelivered(self, recipient: str) -> int:
        return len(self.undelivered(recipient, limit=len(self._directs)))

    def mark_delivered(self, ids: list[int]) -> None:
        self._delivered.update(ids)

    def add_resume_token(self, token_hash: str, user: str, expires_ms: int) -> None:
        self._tokens[token_hash] = (user, expires_ms)

    def use_resume_token(self, token_hash: str, now_ms: int, expires_ms: int) -> str | None:
        entry = self._tokens.get(token_hash)
        if entry is None or entry[1] < now_ms:
            return None
        self._tokens[token_hash] = (entry[0], expires_ms)
        return entry[0]

    def revoke_resume_token(self, token_hash: str) -> None:
        self._tokens.pop(token_hash, None)

    def commit(self) -> None:
        self.commits += 1

    def close(self) -> None:
        self.commit()
