"""What a load run does, checked once, and who does it: members, rooms and workers.

Pure: no sockets, no clock. `LoadConfig.validate` raises `ConfigError` with a
message fit for the command line.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from zchat.protocol.limits import MAX_TEXT_BYTES

MIN_SIZE = 48
"""Smallest message: the header carrying send time and sender must fit."""
MAX_DURATION_S = 3600.0
MAX_CLIENTS = 20_000
DEFAULT_SIZE = 100
DEFAULT_WINDOW = 8
DEFAULT_PASSWORD = "zchat-load-password"  # noqa: S105 (load accounts only, documented)
"""Password of the load accounts unless ``--password``/``ZCHAT_LOAD_PASSWORD`` says otherwise."""
CLIENTS_PER_PROCESS = 500
"""A worker process simulates about this many members at most (by default)."""
DECRYPT_EVERY = 8
"""By default one delivery in this many is opened for latency and integrity."""


class ConfigError(ValueError):
    """The options do not describe a run that can be done."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost`` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """One run of the load generator."""

    rooms: int
    members: int
    duration_s: float
    rate: float | None = None
    """Messages per second offered in total; None with `saturate`; 0 means idle."""
    saturate: bool = False
    size: int = DEFAULT_SIZE
    processes: int = 0
    """Worker processes; 0 picks enough for the population (`worker_count`)."""
    window: int = DEFAULT_WINDOW
    """Sends in flight per member with `saturate`."""
    echo_window: bool = False
    """With `saturate`: a send stays in the window until its sender sees it on its own SUB,
    not only until the broker acknowledges it (so receivers set the pace: no queue grows)."""
    decrypt_every: int = 0
    """Open one delivery in this many for latency and integrity; 0 picks (1, or 8 saturated)."""
    spawn_broker: bool = False
    host: str | None = None
    port: int | None = None
    server_key: str | None = None
    key_port: int | None = None
    password: str = field(default=DEFAULT_PASSWORD, repr=False)
    prefix: str = "load"
    """Account and room names start with this, so load accounts are easy to recognise."""
    logins_in_flight: int = 0
    """Logins and registrations waiting on the broker at once (all workers); 0 picks."""
    login_storm: int = 0
    """Extra clients that all log in at once, a sixth of the way into the run (their accounts
    are registered, or logged in and out once, before the run)."""
    register: bool = True
    """Register the load accounts that do not exist yet."""
    join_timeout_s: float = 0.0
    """Longest wait for the whole population to log in and join; 0 picks from its size."""
    drain_timeout_s: float = 10.0

    @property
    def clients(self) -> int:
        return self.rooms * self.members

    @property
    def idle(self) -> bool:
        return not self.saturate and not self.rate

    def validate(self) -> LoadConfig:
        """Return self if the options make sense; else raise `ConfigError`."""
        if self.rooms < 1 or self.members < 1:
            raise ConfigError("--rooms and --members must be at least 1")
        if self.clients + self.login_storm > MAX_CLIENTS:
            raise ConfigError(f"at most {MAX_CLIENTS} simulated clients")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ConfigError(f"--duration must be more than 0 and at most {MAX_DURATION_S:g} s")
        if self.saturate == (self.rate is not None):
            raise ConfigError("give exactly one of --rate and --saturate")
        if self.rate is not None and self.rate < 0:
            raise ConfigError("--rate must not be negative (0 means idle clients)")
        if not MIN_SIZE <= self.size <= MAX_TEXT_BYTES:
            raise ConfigError(f"--size must be {MIN_SIZE} to {MAX_TEXT_BYTES} bytes")
        if self.spawn_broker == (self.host is not None):
            raise ConfigError("give either --spawn-broker or --host and --port")
        if self.host is not None and self.port is None:
            raise ConfigError("--host needs --port")
        if self.echo_window and not self.saturate:
            raise ConfigError("--echo-window goes with --saturate")
        if self.processes < 0 or self.window < 1 or self.decrypt_every < 0:
            raise ConfigError("--processes, --window and --decrypt-every must be positive")
        if self.server_key is not None and len(self.server_key) != 40:
            raise ConfigError("--server-key is the broker's 40-character Z85 key")
        if not 8 <= len(self.password) <= 1024:
            raise ConfigError("the password must be 8 to 1024 characters")
        if not (self.prefix.isascii() and self.prefix.isalnum() and 1 <= len(self.prefix) <= 8):
            raise ConfigError("--prefix must be 1 to 8 ASCII letters or digits")
        return self

    @property
    def worker_count(self) -> int:
        """Worker processes: as asked; else one per `CLIENTS_PER_PROCESS` members and at
        least one per core the run may take, never more than members.

        A saturating run takes every core (it measures throughput). Any other run beside a
        broker it spawned leaves that broker a core: it measures latency, and a generator
        that crowds the broker's threads off the CPU measures its own scheduling instead.
        """
        if self.processes:
            return min(self.processes, self.clients)
        cores = os.cpu_count() or 1
        if self.spawn_broker and not self.saturate:
            cores = max(cores - 1, 1)
        wanted = max(cores, -(-self.clients // CLIENTS_PER_PROCESS))
        return min(wanted, self.clients)

    @property
    def decrypt_interval(self) -> int:
        """Open one delivery in this many for latency and integrity (every one is still
        received and seq-checked); a sample keeps the generator off the critical path."""
        if self.decrypt_every:
            return self.decrypt_every
        return DECRYPT_EVERY

    @property
    def login_concurrency(self) -> int:
        """Logins in flight at once over all workers."""
        if self.logins_in_flight:
            return self.logins_in_flight
        # The broker's default caps waiting logins at 4 per address; a spawned one is loosened.
        return 64 if self.spawn_broker else 4

    @property
    def join_deadline_s(self) -> float:
        """Password hashing is slow on purpose (~0.2 s a login on 2 cores): allow for it."""
        if self.join_timeout_s:
            return self.join_timeout_s
        return 60.0 + 0.5 * (self.clients + self.login_storm)


def member_name(prefix: str, index: int) -> str:
    """The account of member ``index`` (deterministic, so accounts are reused)."""
    return f"{prefix}-u{index:05d}"


def storm_name(prefix: str, index: int) -> str:
    return f"{prefix}-s{index:05d}"


def room_name(prefix: str, index: int) -> str:
    return f"{prefix}-room{index:04d}"


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """One simulated client: its account, and the room it joins (None: log in only)."""

    index: int
    user: str
    room: str | None


def assign(config: LoadConfig) -> list[list[MemberSpec]]:
    """The members of each worker: member ``i`` is in room ``i // members`` and worker
    ``i % workers``, so every room is spread over the workers; storm clients come last."""
    workers = config.worker_count
    plan: list[list[MemberSpec]] = [[] for _ in range(workers)]
    for index in range(config.clients):
        room = room_name(config.prefix, index // config.members)
        plan[index % workers].append(MemberSpec(index, member_name(config.prefix, index), room))
    for offset in range(config.login_storm):
        index = config.clients + offset
        plan[index % workers].append(MemberSpec(index, storm_name(config.prefix, offset), None))
    return plan
