"""Drive the broker core directly, without sockets: requests in, outgoing messages out."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from zchat.broker.handlers import CheckedLogin, NewAccount, dispatch, expire_sessions, load_state
from zchat.broker.membership import rotate_keys
from zchat.broker.outgoing import Failure, Outgoing, Publish, Result, Unicast
from zchat.broker.publishing import seal_batches
from zchat.broker.state import BrokerSettings, BrokerState, Connection
from zchat.broker.storage import MemoryStorage
from zchat.broker.throttle import Limits
from zchat.protocol import ErrorCode, Request, RoomEvent, RoomKey, SealedBatch
from zchat.protocol.sealing import RoomCipher


@dataclass
class CoreHarness:
    """A broker state on memory storage, with a clock the test moves."""

    now_ms: int = 1_000_000
    storage: MemoryStorage = field(default_factory=MemoryStorage)
    limits: Limits = field(default_factory=Limits)
    state: BrokerState = field(init=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        keys = (bytes([n % 256]) * 32 for n in itertools.count(1))
        sessions = (f"s{n}" for n in itertools.count(1))
        self.state = load_state(
            BrokerState(
                self.storage,
                BrokerSettings(
                    pub_port=5001, lease_ms=15_000, ping_interval_ms=5_000, limits=self.limits
                ),
                new_key=lambda: next(keys),
                new_session_id=lambda: next(sessions),
            )
        )

    def connection(self, name: str, key: str | None = None, peer: str = "127.0.0.1") -> Connection:
        """Connection ``name`` (its routing id), with the CURVE key ``key`` (one of its own
        by default: a second key on the same routing id is another peer claiming it)."""
        return Connection(name.encode(), peer, key or f"key-of-{name}")

    def send(self, conn: Connection, request: Request) -> list[Outgoing]:
        """What the shell would send for ``request`` alone (a batch of one)."""
        return self.batch((conn, request))

    def batch(self, *requests: tuple[Connection, Request]) -> list[Outgoing]:
        """What the shell would send for ``requests`` taken in one batch: new room keys
        are handed out once, as the batch ends."""
        outgoing: list[Outgoing] = []
        for conn, request in requests:
            outgoing += dispatch(self.state, conn, next(self._ids), request, self.now_ms)
        return outgoing + rotate_keys(self.state)

    def lift_message_limit(self, conn: Connection, tokens: int = 10_000) -> None:
        """Let ``conn``'s session (and account) send ``tokens`` messages at once."""
        session = self.state.sessions[conn.routing_id]
        account = self.state.messages_by_account.bucket(session.user.casefold(), self.now_ms)
        for bucket in (session.send_bucket, account):
            bucket.burst = bucket.tokens = tokens

    def call(self, conn: Connection, request: Request) -> Result | Failure:
        """The reply to ``request`` (the first outgoing item is always the reply)."""
        reply = self.send(conn, request)[0]
        assert isinstance(reply, Unicast) and reply.message is not None
        assert isinstance(reply.message, Result | Failure)
        return reply.message

    def ok(self, conn: Connection, request: Request) -> dict[str, object]:
        reply = self.call(conn, request)
        assert isinstance(reply, Result), reply
        return reply.data

    def login(self, name: str, user: str | None = None) -> Connection:
        """A connection logged in as ``user`` (registered if new)."""
        conn = self.connection(name)
        user = user or name
        if self.storage.account(user) is None:
            self.ok(conn, NewAccount(user, "hash"))
        self.ok(conn, CheckedLogin(user, user))
        return conn

    def expire(self) -> list[Outgoing]:
        outgoing = expire_sessions(self.state, self.now_ms)
        return outgoing + rotate_keys(self.state)


def publications(outgoing: list[Outgoing]) -> list[Publish]:
    """What the shell would publish for ``outgoing`` (room posts sealed in batches)."""
    return [item for item in seal_batches(outgoing) if isinstance(item, Publish)]


def key_events(outgoing: list[Outgoing]) -> dict[bytes, RoomKey]:
    return {
        item.routing_id: item.message
        for item in outgoing
        if isinstance(item, Unicast) and isinstance(item.message, RoomKey)
    }


def open_publication(publication: Publish, cipher: RoomCipher, room: str = "room1") -> RoomEvent:
    """The one event a publication holds (a single request publishes one per room)."""
    [event] = cipher.open(publication.topic, SealedBatch.parse(publication.body), room)
    return event


def error_code(reply: Result | Failure) -> ErrorCode:
    """The code of a reply that must be an error."""
    assert isinstance(reply, Failure), reply
    return reply.error.code
