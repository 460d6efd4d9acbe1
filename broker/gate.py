"""The first check a ROUTER request meets: a token bucket per connection and per address.

It runs before the request is decoded, so a flood costs the broker two
dictionary lookups per frame and no more. libzmq already reads the connections
in turn (fair queueing), so one connection cannot take a batch from the others;
these buckets stop one connection, or one address with many connections, from
making the broker work for more than its share. Over a limit the request is
not decoded: the shell answers it with one precomputed `rate_limited` error
(without an id, since none was read), so every request still gets exactly one
reply, and a reply to a peer that does not read is dropped by ZeroMQ.

Pure: time is passed in (milliseconds); tables are swept of entries whose
buckets are full again, which are the same as no entry, so memory stays bounded
by the connections and addresses active in the last few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

Key = TypeVar("Key", bytes, str)

ADDRESS_REFRESH_MS = 1_000
"""How long a connection's address is trusted before it is read again (a routing id
freed by one peer may be claimed by another)."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_ms: int
    address: str = ""
    address_ms: int = -ADDRESS_REFRESH_MS


@dataclass(slots=True)
class RequestGate:
    """Admits a request if its connection and its address each have a token left."""

    connection_rate: float
    connection_burst: int
    address_rate: float
    address_burst: int
    capacity: int = 100_000
    """Most connections (and addresses) tracked; past it, full buckets are swept at once."""
    dropped: int = 0
    """Requests refused since the shell last reported (and reset) the count."""
    _connections: dict[bytes, _Bucket] = field(default_factory=dict)
    _addresses: dict[str, _Bucket] = field(default_factory=dict)

    def address(self, routing_id: bytes, now_ms: int) -> str | None:
        """The connection's address as last seen, or None when it must be read again."""
        bucket = self._connections.get(routing_id)
        if bucket is None or now_ms - bucket.address_ms >= ADDRESS_REFRESH_MS:
            return None
        return bucket.address

    def admit(self, routing_id: bytes, address: str, now_ms: int) -> bool:
        """Spend a token of the connection and of its address; False if either has none."""
        connection = self._connections.get(routing_id)
        if connection is None:
            self._make_room(self._connections, now_ms)
            connection = self._connections[routing_id] = _Bucket(self.connection_burst, now_ms)
        per_address = self._addresses.get(address)
        if per_address is None:
            self._make_room(self._addresses, now_ms)
            per_address = self._addresses[address] = _Bucket(self.address_burst, now_ms)
        if _take(connection, self.connection_rate, self.connection_burst, now_ms) and _take(
            per_address, self.address_rate, self.address_burst, now_ms
        ):
            return True
        self.dropped += 1
        return False

    def remember(self, routing_id: bytes, address: str, now_ms: int) -> None:
        """Record the address just read for a connection."""
        connection = self._connections.get(routing_id)
        if connection is None:
            self._make_room(self._connections, now_ms)
            connection = self._connections[routing_id] = _Bucket(self.connection_burst, now_ms)
        connection.address = address
        connection.address_ms = now_ms

    def sweep(self, now_ms: int) -> None:
        """Forget buckets that have refilled: they behave as if never used."""
        _sweep(self._connections, self.connection_rate, self.connection_burst, now_ms)
        _sweep(self._addresses, self.address_rate, self.address_burst, now_ms)

    def _make_room(self, table: dict[Key, _Bucket], now_ms: int) -> None:
        if len(table) >= self.capacity:
            self.sweep(now_ms)
            if len(table) >= self.capacity:  # all busy: start over rather than sweep again
                table.clear()

    def tracked(self) -> tuple[int, int]:
        """How many connections and addresses are tracked now."""
        return len(self._connections), len(self._addresses)


def _sweep(table: dict[Key, _Bucket], rate: float, burst: int, now_ms: int) -> None:
    full = [
        key
        for key, bucket in table.items()
        if bucket.tokens + (now_ms - bucket.updated_ms) * rate / 1000 >= burst
    ]
    for key in full:
        del table[key]


def _take(bucket: _Bucket, rate: float, burst: int, now_ms: int) -> bool:
    elapsed = now_ms - bucket.updated_ms
    if elapsed > 0:
        bucket.tokens = min(burst, bucket.tokens + elapsed * rate / 1000)
        bucket.updated_ms = now_ms
    if bucket.tokens < 1:
        return False
    bucket.tokens -= 1
    return True
