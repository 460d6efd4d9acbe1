"""The one interface the broker core stores through, and an in-memory implementation.

Writes are buffered until `commit`: the shell commits once per batch of
requests, before any reply or publication of that batch leaves, so a reply
always means the data is stored (group commit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from zchat.protocol.validation import name_key


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
    """One entry of a room's stream."""

    room: str
    seq: int
    kind: str
    user: str
    ts_ms: int
    text: str


class Storage(Protocol):
    """Accounts, rooms and room events; names are unique ignoring case."""

    def add_account(self, name: str, password_hash: str) -> bool:
        """Store a new account; False if the name (ignoring case) is taken."""
        ...

    def account(self, name: str) -> Account | None:
        """The account of that name, ignoring case."""
        ...

    def add_room(self, name: str) -> None:
        """Store a new room (the caller knows the name is free)."""
        ...

    def rooms(self) -> list[StoredRoom]:
        """Every room with its last sequence number."""
        ...

    def append_event(self, event: StoredEvent) -> None:
        """Add the next event of a room's stream."""
        ...

    def events(self, room: str, after_seq: int, limit: int) -> list[StoredEvent]:
        """Events of a room with seq > after_seq, oldest first, at most ``limit``."""
        ...

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
        self._events: dict[str, list[StoredEvent]] = {}
        self.commits = 0

    def add_account(self, name: str, password_hash: str) -> bool:
        key = name_key(name)
        if key in self._accounts:
            return False
        self._accounts[key] = Account(name, password_hash)
        return True

    def account(self, name: str) -> Account | None:
        return self._accounts.get(name_key(name))

    def add_room(self, name: str) -> None:
        self._rooms[name_key(name)] = name
        self._events[name_key(name)] = []

    def rooms(self) -> list[StoredRoom]:
        return [
            StoredRoom(name, self._events[key][-1].seq if self._events[key] else 0)
            for key, name in self._rooms.items()
        ]

    def append_event(self, event: StoredEvent) -> None:
        self._events[name_key(event.room)].append(event)

    def events(self, room: str, after_seq: int, limit: int) -> list[StoredEvent]:
        return [e for e in self._events[name_key(room)] if e.seq > after_seq][:limit]

    def commit(self) -> None:
        self.commits += 1

    def close(self) -> None:
        self.commit()
