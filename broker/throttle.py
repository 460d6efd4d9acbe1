"""Abuse limits and the small pure mechanisms that enforce them.

Everything takes the time as an argument (milliseconds), so the core stays a
pure function of its inputs, and every table is bounded: an attacker cycling
through addresses or names evicts old entries instead of growing memory.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit the broker enforces; each is a `zchat-broker` option."""

    message_rate: float = 20.0
    """Messages (room messages and direct messages together) per second, sustained, for
    one session and for one account: all of an account's sessions share one budget."""
    message_burst: int = 40
    """Messages one session (or account) may send at once before `message_rate` applies."""
    membership_rate: float = 2.0
    """Joins and leaves per second one account may make, sustained (all its sessions)."""
    membership_burst: int = 150
    """Joins and leaves at once: enough for two sessions to rejoin all their rooms."""
    rooms_per_hour: float = 30.0
    """Rooms one account may create per hour, sustained."""
    room_burst: int = 10
    max_rooms: int = 10_000
    """Rooms the broker holds at most (rooms are never deleted); then no more are created."""
    login_free_failures: int = 3
    """Failed logins answered without delay (counted per account and address, per address,
    and per account)."""
    login_max_failures: int = 10
    """Failed logins after which `too_many_attempts` is answered until the window passes:
    per account from one address, and per address. The account as a whole is only ever
    delayed, so strangers failing on purpose cannot lock its owner out."""
    login_delay_ms: int = 500
    """The first delay; it doubles with each further failure, up to `login_max_delay_ms`."""
    login_max_delay_ms: int = 8_000
    login_window_ms: int = 15 * 60_000
    """Failures older than this (since the last one) are forgotten."""
    registrations_per_hour: float = 30.0
    """Accounts one address may create per hour, sustained (a team behind one NAT...)."""
    registration_burst: int = 10
    sessions_per_address: int = 64
    rooms_per_session: int = 64
    pending_auth_per_address: int = 4
    """Logins and registrations one address may have waiting for the password hasher."""
    pending_auth_total: int = 256
    connection_request_rate: float = 200.0
    """Requests per second one connection may send, sustained, checked before decoding
    (far above what `message_rate` lets a session send: this bounds floods, not chat)."""
    connection_request_burst: int = 5_000
    address_request_rate: float = 5_000.0
    """Requests per second one address may send over all its connections, sustained."""
    address_request_burst: int = 20_000
    tracked_keys: int = 100_000
    """Most accounts and addresses remembered by each throttle table."""

    def login_delay(self, failures: int) -> int:
        """Milliseconds to wait before checking a login, given recent failures."""
        over = failures - self.login_free_failures
        if over < 0:
            return 0
        return min(self.login_delay_ms << min(over, 30), self.login_max_delay_ms)


@dataclass(slots=True)
class TokenBucket:
    """Allows ``burst`` events at once and ``rate`` per second after that."""

    rate: float
    burst: int
    tokens: float
    updated_ms: int

    @classmethod
    def full(cls, rate: float, burst: int, now_ms: int) -> TokenBucket:
        return cls(rate, burst, float(burst), now_ms)

    def refill(self, now_ms: int) -> bool:
        """Add the tokens earned since the last update; whether one is there to take."""
        elapsed = max(now_ms - self.updated_ms, 0)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate / 1000)
        self.updated_ms = now_ms
        return self.tokens >= 1

    def take(self, now_ms: int) -> bool:
        """Spend one token if there is one."""
        if not self.refill(now_ms):
            return False
        self.tokens -= 1
        return True

    def wait_ms(self) -> int:
        """How long until the next token, from the last update."""
        return max(0, int((1 - self.tokens) * 1000 / self.rate) + 1)


def take_all(now_ms: int, *buckets: TokenBucket) -> TokenBucket | None:
    """Spend one token of every bucket, or of none: None if allowed, else the bucket that
    refused (the one to wait longest for), so a refusal never costs the caller a token."""
    empty = [bucket for bucket in buckets if not bucket.refill(now_ms)]
    if empty:
        return max(empty, key=lambda bucket: bucket.wait_ms())
    for bucket in buckets:
        bucket.tokens -= 1
    return None


@dataclass(slots=True)
class FailureCounter:
    """Recent failures per key (an account or an address), forgotten after a quiet window."""

    window_ms: int
    capacity: int
    _entries: OrderedDict[str, tuple[int, int]] = field(default_factory=OrderedDict)

    def count(self, key: str, now_ms: int) -> int:
        entry = self._entries.get(key)
        if entry is None:
            return 0
        failures, last_ms = entry
        if now_ms - last_ms > self.window_ms:
            del self._entries[key]
            return 0
        return failures

    def fail(self, key: str, now_ms: int) -> None:
        self._entries[key] = (self.count(key, now_ms) + 1, now_ms)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(slots=True)
class BucketTable:
    """One token bucket per key, least recently used evicted past ``capacity``."""

    rate: float
    burst: int
    capacity: int
    _buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def bucket(self, key: str, now_ms: int) -> TokenBucket:
        """The bucket of ``key`` (a full one if it is new or was evicted)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(self.rate, self.burst, now_ms)
            while len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        return bucket

    def take(self, key: str, now_ms: int) -> TokenBucket | None:
        """None if allowed; else the empty bucket (to say how long to wait)."""
        bucket = self.bucket(key, now_ms)
        return None if bucket.take(now_ms) else bucket
