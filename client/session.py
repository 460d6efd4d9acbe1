"""`ChatClient`: one connection to a broker, as typed async calls and a stream of events.

It ties the DEALER (`Connection`) to the SUB side (`Subscriber`): joining
subscribes first, the join reply and ``room_key`` events feed the room's key
ring, and a ping task keeps the session's lease while logged in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import zmq
import zmq.asyncio

from zchat.protocol import (
    Event,
    Hello,
    Join,
    Leave,
    ListRooms,
    Login,
    Logout,
    Members,
    Ping,
    Register,
    RoomKey,
    Send,
    SessionEnded,
    ZchatError,
    room_topic,
)
from zchat.protocol.errors import NotLoggedIn, SessionExpired
from zchat.protocol.validation import name_key

from .connection import DEFAULT_TIMEOUT, Connection
from .errors import BrokerUnreachable, ClientClosed, RequestTimedOut
from .events import ClientEvent, Disconnected, JoinedRoom, RoomInfo
from .replies import ServerInfo, field, parse_hello, parse_join, parse_rooms, strings
from .sockets import CurveKeys, open_socket
from .subscription import Subscriber

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for the broker's ``hello`` before giving up on the address."""

AUTH_TIMEOUT = 30.0
"""Seconds ``register`` and ``login`` may take: the broker hashes slowly on purpose and
delays answers after failed logins, so these get longer than other requests."""


def endpoint(host: str, port: int) -> str:
    """A TCP endpoint; IPv6 literals need brackets."""
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


class ChatClient:
    """A connection to one broker; create it with `ChatClient.connect`.

    Every method raises `zchat.protocol.ZchatError` subclasses: the broker's
    typed error replies, or the client's own (`RequestTimedOut`, `ClientClosed`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        context: zmq.asyncio.Context | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        server_key: str,
    ) -> None:
        """Open (but do not yet use) the sockets; prefer `ChatClient.connect`.

        ``server_key`` is the broker's public CurveZMQ key (Z85): both sockets are
        encrypted, and a broker without that key never answers.
        """
        keys = CurveKeys.for_broker(server_key)
        self.host = host
        self.port = port
        self._owns_context = context is None
        self._context = zmq.asyncio.Context() if context is None else context
        self._events: asyncio.Queue[ClientEvent | None] = asyncio.Queue()
        self._connection = Connection(
            open_socket(self._context, zmq.DEALER, keys), self._on_private_event, timeout
        )
        self._subscriber = Subscriber(
            open_socket(self._context, zmq.SUB, keys), self._events.put_nowait
        )
        self._rooms: dict[str, bytes] = {}
        """name_key(room) -> topic of every room this session is in."""
        self._room_names: dict[bytes, str] = {}
        self._pinger: asyncio.Task[None] | None = None
        self._server: ServerInfo | None = None
        self.user: str | None = None
        """The logged-in user's name as registered, or None."""
        self._closed = False
        self._auth_timeout = max(timeout, AUTH_TIMEOUT)

    @classmethod
    async def connect(
        cls,
        host: str = "localhost",
        port: int = 5000,
        context: zmq.asyncio.Context | None = None,
        *,
        server_key: str,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> ChatClient:
        """Connect to a broker and say ``hello``; raises `BrokerUnreachable`.

        With the wrong ``server_key`` the encrypted handshake never completes, so
        this fails the same way as an absent broker.
        """
        client = cls(host, port, context, timeout, server_key=server_key)
        try:
            await client._hello(connect_timeout)
        except BaseException:
            await client.aclose()
            raise
        return client

    async def _hello(self, connect_timeout: float) -> None:
        where = f"{self.host}:{self.port}"
        self._connection.start()
        try:
            self._connection.connect(endpoint(self.host, self.port))
            self._server = await self._connection.call(Hello(), parse_hello, connect_timeout)
            self._subscriber.connect(endpoint(self.host, self._server.pub_port))
        except (RequestTimedOut, zmq.ZMQError) as exc:
            raise BrokerUnreachable(f"cannot reach the broker at {where}") from exc
        self._subscriber.start()

    @property
    def server(self) -> ServerInfo:
        """What the broker said in ``hello``."""
        if self._server is None:
            raise ClientClosed("the client never completed hello")
        return self._server

    @property
    def joined_rooms(self) -> list[str]:
        """Names of the rooms this session is in, as the broker spells them."""
        return sorted(self._room_names.values(), key=name_key)

    # --- account and session ------------------------------------------------------------

    async def register(self, user: str, password: str) -> str:
        """Create an account (does not log in); returns the name as registered."""
        result = await self._connection.request(Register(user, password), self._auth_timeout)
        return field(result, "user", str)

    async def login(self, user: str, password: str) -> str:
        """Start a session; returns the canonical user name and starts pinging."""
        result = await self._connection.request(Login(user, password), self._auth_timeout)
        self.user = field(result, "user", str)
        self._start_pinging()
        return self.user

    async def logout(self) -> list[str]:
        """End this session (leaving every room); returns the rooms it left."""
        try:
            result = await self._connection.request(Logout())
        finally:
            self._forget_session()
        return list(strings(result, "rooms"))

    # --- rooms ----------------------------------------------------------------------------

    async def rooms(self) -> list[RoomInfo]:
        """Every room with its member count, sorted by name."""
        return await self._connection.call(ListRooms(), parse_rooms)

    async def join(self, room: str) -> JoinedRoom:
        """Join (or create) a room; its events then arrive through `events`.

        The SUB socket subscribes before the request goes out, so nothing
        published right after the reply is missed.
        """
        request = Join(room)  # validates the name before anything is subscribed
        guess = room_topic(room)
        self._subscriber.subscribe(guess)

        def apply(result: dict[str, Any]) -> JoinedRoom:
            joined = parse_join(result)
            if joined.topic != guess and guess not in self._room_names:
                self._subscriber.unsubscribe(guess)
            stream = self._subscriber.subscribe(joined.topic)
            self._rooms[name_key(joined.room.name)] = joined.topic
            self._room_names[joined.topic] = joined.room.name
            self._subscriber.deliver(stream.activate(joined.kid, joined.key, joined.room.seq))
            return joined.room

        try:
            joined = await self._connection.call(request, apply)
        except BaseException:
            if guess not in self._room_names:
                self._subscriber.unsubscribe(guess)
            raise
        if room_topic(joined.name) != guess:
            # The room is spelled differently, so the subscription went out only after
            # the reply: join again (a no-op on the broker) to learn a seq it covers.
            return await self.join(joined.name)
        return joined

    async def leave(self, room: str) -> str:
        """Leave a room; its topic is unsubscribed and its keys forgotten."""

        def apply(result: dict[str, Any]) -> str:
            name = field(result, "room", str)
            self._forget_room(name)
            return name

        return await self._connection.call(Leave(room), apply)

    async def members(self, room: str) -> list[str]:
        """The users in a room this session is in, sorted."""
        result = await self._connection.request(Members(room))
        return list(strings(result, "members"))

    async def send(self, room: str, text: str) -> int:
        """Post a message; returns the ``seq`` it was published under, once stored."""
        result = await self._connection.request(Send(room, text))
        return field(result, "seq", int)

    async def ping(self) -> None:
        """Renew the lease now (the ping task does this on its own)."""
        await self._connection.request(Ping())

    # --- events ---------------------------------------------------------------------------

    async def next_event(self, timeout: float | None = None) -> ClientEvent:
        """The next room event or notice; `TimeoutError` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # wake any other reader too
            raise ClientClosed("the client was closed")
        return event

    async def events(self) -> AsyncIterator[ClientEvent]:
        """Every room event and notice, until the client is closed."""
        while True:
            try:
                yield await self.next_event()
            except ClientClosed:
                return

    def _on_private_event(self, event: Event) -> None:
        """Route a ``room_key`` or ``session_ended`` from the DEALER reader."""
        if isinstance(event, RoomKey):
            topic = self._rooms.get(name_key(event.room))
            stream = self._subscriber.stream(topic) if topic is not None else None
            if stream is None:
                log.debug("ignoring a key for room %r this session is not in", event.room)
                return
            self._subscriber.deliver(stream.add_key(event.kid, event.key))
        elif isinstance(event, SessionEnded):
            self._end_session(event)
        else:
            log.debug("ignoring event %r", event)

    def _end_session(self, event: SessionEnded) -> None:
        if self.user is None:
            return  # already reported (the event and a refused ping can both say so)
        self._forget_session()
        self._events.put_nowait(event)

    def _forget_room(self, name: str) -> None:
        topic = self._rooms.pop(name_key(name), None)
        if topic is not None:
            self._room_names.pop(topic, None)
            self._subscriber.unsubscribe(topic)

    def _forget_session(self) -> None:
        self.user = None
        self._rooms.clear()
        self._room_names.clear()
        self._subscriber.unsubscribe_all()
        pinger, self._pinger = self._pinger, None
        if pinger is not None and pinger is not asyncio.current_task():
            pinger.cancel()

    # --- lease ----------------------------------------------------------------------------

    def _start_pinging(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        self._pinger = asyncio.create_task(self._ping_forever(), name="zchat-pinger")

    async def _ping_forever(self) -> None:
        """Keep the lease alive; report silence once, and a refused ping as session end."""
        interval = self.server.ping_interval_ms / 1000
        silent = False
        while True:
            await asyncio.sleep(interval)
            try:
                await self._connection.request(Ping(), timeout=interval * 2)
            except RequestTimedOut:
                if not silent:
                    silent = True
                    self._events.put_nowait(Disconnected("the broker is not answering"))
                continue
            except SessionExpired:
                self._end_session(SessionEnded("expired"))
                return
            except NotLoggedIn:  # e.g. the broker restarted: the connection is a new one
                self._end_session(SessionEnded("the broker no longer knows this session"))
                return
            except ClientClosed:
                return
            except ZchatError as exc:
                log.warning("ping refused: %s", exc)
            silent = False

    # --- closing --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close both sockets, stop every task, end `events`; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        pinger, self._pinger = self._pinger, None
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        await self._connection.aclose()
        await self._subscriber.aclose()
        self._events.put_nowait(None)
        if self._owns_context:
            self._context.term()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
