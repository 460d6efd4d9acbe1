"""Broker settings, with the defaults a fresh machine runs with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from zchat.protocol.limits import KEY_PORT_OFFSET, LEASE_MS

from .throttle import Limits

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 5000
DEFAULT_PUB_PORT = 5001
DEFAULT_KEY_PORT = DEFAULT_PORT + KEY_PORT_OFFSET
DEFAULT_PUB_HWM = 10_000
DATABASE_FILE = "zchat.sqlite3"


def default_data_dir() -> Path:
    """The per-user data directory (e.g. ``~/.local/share/zchat`` on Linux)."""
    return Path(platformdirs.user_data_dir("zchat", appauthor=False))


@dataclass(frozen=True, slots=True)
class Retention:
    """How much room history the broker keeps: events older than ``days`` go, and any
    beyond the last ``max_per_room`` of a room."""

    days: float = 365.0
    max_per_room: int = 100_000

    @property
    def max_age_ms(self) -> int:
        return int(self.days * 86_400_000)


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Where the broker listens and keeps its data; port 0 means any free port."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    pub_port: int = DEFAULT_PUB_PORT
    key_port: int = DEFAULT_KEY_PORT
    data_dir: Path | None = None
    lease_ms: int = LEASE_MS
    """A session silent this long is ended; clients ping three times per lease."""
    limits: Limits = field(default_factory=Limits)
    retention: Retention = field(default_factory=Retention)
    pub_hwm: int = DEFAULT_PUB_HWM
    """Publications (batches of room events, at most 16 KiB each) queued per subscriber before
    ZeroMQ drops (bounds memory per slow reader)."""
    hash_workers: int = 2
    """Threads hashing passwords; each Argon2 hash holds 64 MiB while it runs."""

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir or default_data_dir()

    @property
    def database_path(self) -> Path:
        return self.resolved_data_dir / DATABASE_FILE
