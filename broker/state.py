"""The broker's in-memory state: sessions, rooms and who is in which.

Plain data; the functions that change it live in `membership` and `handlers`.
Nothing here reads the clock or opens a socket: time and randomness come in.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from zchat.protocol import RoomCipher, new_room_key
from zchat.protocol.limits import LEASE_MS, PING_INTERVAL_MS
from zchat.protocol.sealing import new_topic_key
from zchat.protocol.validation import name_key

from .repeated_log import RepeatedLog
from .storage import Storage
from .throttle import BucketTable, FailureCounter, Limits, TokenBucket

EXPIRED_ROUTES_KEPT = 10_000
"""How many expired connections are remembered to answer `session_expired` (oldest forgotten)."""


@dataclass(frozen=True, slots=True)
class Connection:
    """One DEALER connection as the ROUTER sees it.

    The routing id is chosen by the peer (any peer may claim any id once its owner has
    gone), so it only says where to send; the CURVE key, which the peer cannot copy,
    says who it is.
    """

    routing_id: bytes
    peer: str
    """The peer's IP address, for the operator's log only."""
    client_key: str = ""
    """The connection's CURVE public key (Z85), as the ZAP handler vouched for it."""


@dataclass(eq=False, slots=True)
class Session:
    """A logged-in user on one connection."""

    session_id: str
    user: str
    connection: Connection
    last_seen_ms: int
    send_bucket: TokenBucket
    """The session's message rate limit."""
    rooms: set[str] = field(default_factory=set)
    """Keys (`name_key`) of the rooms this session is in."""
    resume_hash: str = field(default="", repr=False)
    """Hash of the session's current resume token (replaced at each resume, revoked at
    logout)."""


@dataclass(eq=False, slots=True)
class Room:
    """A room: its stream position, current key and members."""

    name: str
    topic: bytes
    seq: int
    cipher: RoomCipher
    sessions: dict[str, Session] = field(default_factory=dict)
    """Member sessions by session id."""
    user_sessions: dict[str, int] = field(default_factory=dict)
    """How many of its sessions each member user has here (a user is one member)."""
    next_cipher: RoomCipher | None = None
    """The key that replaces `cipher` at the end of this batch, because a session left: it
    seals everything posted from the leave on, and reaches only who is still in then."""


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """What `hello` tells clients, and the lease and limits the core enforces."""

    pub_port: int
    server: str = "zchat"
    ping_interval_ms: int = PING_INTERVAL_MS
    lease_ms: int = LEASE_MS
    limits: Limits = field(default_factory=Limits)


@dataclass(eq=False)
class BrokerState:
    """Everything the core knows; one per broker, passed to every handler."""

    storage: Storage
    settings: BrokerSettings
    new_key: Callable[[], bytes] = new_room_key
    topic_key: bytes = field(default_factory=new_topic_key, repr=False)
    """What room topics are derived from (`room_topic`); a broker's stays across restarts."""
    new_session_id: Callable[[], str] = lambda: secrets.token_hex(16)
    new_token: Callable[[], str] = lambda: secrets.token_hex(32)
    sessions: dict[bytes, Session] = field(default_factory=dict)
    """Live sessions by the routing id of their connection (`session_of` checks the key)."""
    sessions_by_token: dict[str, Session] = field(default_factory=dict)
    """Live sessions by the hash of their resume token, so a resume takes its session over."""
    expired: OrderedDict[tuple[bytes, str], None] = field(default_factory=OrderedDict)
    """Connections (routing id and key) whose session the lease ended, so they hear
    `session_expired`."""
    rooms: dict[str, Room] = field(default_factory=dict)
    """Every room by `name_key`."""
    rooms_by_topic: dict[bytes, Room] = field(default_factory=dict)
    room_order: list[str] = field(default_factory=list)
    """Every room's `name_key`, sorted, for paging `rooms` (rebuilt when one is added)."""
    sessions_by_user: dict[str, dict[str, Session]] = field(default_factory=dict)
    """Live sessions by `name_key` of their user, then session id (for direct messages)."""
    announcing: dict[bytes, int] = field(default_factory=dict)
    """Rooms (by topic) whose latest seq is announced, until the time given (ms)."""
    sessions_per_peer: dict[str, int] = field(default_factory=dict)
    rekey_due: dict[str, Room] = field(default_factory=dict)
    """Rooms (by `name_key`) with a `Room.next_cipher` to hand out when the batch ends."""
    login_failures_by_account: FailureCounter = field(init=False)
    """Only ever delays a login: anyone can fail someone else's login."""
    login_failures_by_account_address: FailureCounter = field(init=False)
    login_failures_by_address: FailureCounter = field(init=False)
    registrations_by_address: BucketTable = field(init=False)
    messages_by_account: BucketTable = field(init=False)
    memberships_by_account: BucketTable = field(init=False)
    """Joins and leaves, by `name_key` of the account."""
    room_creations_by_account: BucketTable = field(init=False)
    failures: RepeatedLog = field(
        default_factory=lambda: RepeatedLog(logging.getLogger("zchat.broker.failures"))
    )
    """Where requests that failed are logged, once per kind and interval."""

    def __post_init__(self) -> None:
        limits = self.settings.limits
        window, tracked = limits.login_window_ms, limits.tracked_keys
        self.login_failures_by_account = FailureCounter(window, tracked)
        self.login_failures_by_account_address = FailureCounter(window, tracked)
        self.login_failures_by_address = FailureCounter(window, tracked)
        self.messages_by_account = BucketTable(limits.message_rate, limits.message_burst, tracked)
        self.memberships_by_account = BucketTable(
            limits.membership_rate, limits.membership_burst, tracked
        )
        self.room_creations_by_account = BucketTable(
            limits.rooms_per_hour / 3600, limits.room_burst, tracked
        )
        self.registrations_by_address = BucketTable(
            limits.registrations_per_hour / 3600, limits.registration_burst, limits.tracked_keys
        )

    def add_room(self, room: Room) -> Room:
        """Register a room (already stored)."""
        self.rooms[name_key(room.name)] = room
        self.rooms_by_topic[room.topic] = room
        return room

    def session_held(self, routing_id: bytes, client_key: str) -> Session | None:
        """The session on ``routing_id`` if the connection there has its key, else None:
        a routing id alone never names a session (any peer may claim a gone one's id)."""
        session = self.sessions.get(routing_id)
        if session is not None and session.connection.client_key == client_key:
            return session
        return None

    def remember_expired(self, connection: Connection) -> None:
        self.expired[connection.routing_id, connection.client_key] = None
        if len(self.expired) > EXPIRED_ROUTES_KEPT:
            self.expired.popitem(last=False)
