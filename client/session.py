"""`ChatClient`: one session with a broker, as typed async calls and a stream of events.

It ties the DEALER (`Connection`) to the SUB side (`Subscriber`) and keeps the
promise of the specification's "Missing nothing": every room event reaches the
application once, in order, whatever PUB/SUB dropped.

- Joining subscribes first, then asks for ``join`` with a snapshot of history;
  each room's `Sequencer` plays the snapshot, then what arrived meanwhile.
- A skipped seq, an announcement of a later one, or a pause of the reader
  (the application stopped consuming) makes the sequencer ask for a range,
  which a per-room task fetches with ``history``.
- A lost connection or session (a killed broker, silence, a refused ping) is
  repaired in the background: a fresh connection, ``resume`` with the token
  from ``login``, the rooms joined again and their gaps filled; sends made
  meanwhile wait and are retried with the same ``msg_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from zchat.protocol import (
    Direct,
    DirectMessage,
    DmAck,
    Event,
    Hello,
    History,
    Inbox,
    Join,
    Leave,
    ListRooms,
    Login,
    Logout,
    Members,
    Ping,
    Register,
    Resume,
    RoomEvent,
    RoomKey,
    Send,
    SessionEnded,
    ZchatError,
)
from zchat.protocol.errors import (
    FrameTooLarge,
    NotLoggedIn,
    NotMember,
    RateLimited,
    SessionExpired,
    UnknownOperation,
)
from zchat.protocol.limits import MAX_HISTORY_PAGE
from zchat.protocol.validation import name_key

from . import backoff
from .connection import DEFAULT_TIMEOUT, Connection
from .errors import BrokerUnreachable, ClientClosed, ConnectionLost, RequestTimedOut
from .events import (
    ClientEvent,
    DirectReceived,
    DirectSent,
    Disconnected,
    HistoryPage,
    JoinedRoom,
    Reconnected,
    RoomInfo,
)
from .feed import DEFAULT_LIMIT, EventFeed
from .replies import (
    HistoryResult,
    JoinResult,
    ServerInfo,
    SessionResult,
    field,
    parse_dm,
    parse_hello,
    parse_history,
    parse_inbox,
    parse_join,
    parse_rooms,
    parse_session,
    strings,
)
from .sequencer import Fetch, Sequencer, Step
from .sockets import CurveKeys, open_socket
from .subscription import Publication, Subscriber

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for the broker's ``hello`` before giving up on the address."""

AUTH_TIMEOUT = 30.0
"""Seconds ``register`` and ``login`` may take: the broker hashes slowly on purpose and
delays answers after failed logins, so these get longer than other requests."""

SEND_DEADLINE = 60.0
"""Seconds `ChatClient.send` keeps retrying a message across an outage before giving up."""

DEFAULT_HISTORY = 50
"""Events of scrollback a join shows by default."""

TRANSIENT = (ConnectionLost, RequestTimedOut, NotLoggedIn, SessionExpired)
"""Failures a reconnect repairs: a request that met them can be made again after it."""

SEEN_DIRECTS = 10_000
"""Ids of direct messages remembered as shown, so one that comes again (as an event, then
from the inbox when its acknowledgement was lost) is shown once."""

REJOIN_WAIT_S = 1.0
"""How long to wait before joining a room again when a rate-limited broker does not say."""


def endpoint(host: str, port: int) -> str:
    """A TCP endpoint; IPv6 literals need brackets."""
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def new_msg_id() -> str:
    """16 random bytes in hex: the id a message keeps across its retries."""
    return secrets.token_hex(16)


@dataclass(eq=False)
class _Room:
    """A room this session is in: its topic, its sequencer and its history fetcher."""

    name: str
    topic: bytes
    sequencer: Sequencer
    fetcher: asyncio.Task[None] | None = None


class ChatClient:
    """A connection to one broker; create it with `ChatClient.connect`.

    Every method raises `zchat.protocol.ZchatError` subclasses: the broker's
    typed error replies, or the client's own (`RequestTimedOut`, `ConnectionLost`,
    `ClientClosed`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        context: zmq.asyncio.Context | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        server_key: str,
        max_events: int = DEFAULT_LIMIT,
        sub_options: Mapping[int, int] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        """Open (but do not yet use) the sockets; prefer `ChatClient.connect`.

        ``server_key`` is the broker's public CurveZMQ key (Z85): both sockets are
        encrypted, and a broker without that key never answers. ``max_events`` is
        how many events may wait for the application before the client stops
        reading room traffic; ``sub_options`` are extra options for the SUB socket
        (such as ``zmq.RCVHWM``).
        """
        self._server_key = server_key
        self.host = host
        self.port = port
        self._owns_context = context is None
        self._context = zmq.asyncio.Context() if context is None else context
        self._feed: EventFeed[ClientEvent] = EventFeed(max_events)
        self._connection = Connection(
            self._new_dealer(), self._on_private_event, timeout, self._on_disconnect
        )
        subscriber = open_socket(
            self._context, zmq.SUB, CurveKeys.for_broker(server_key), heartbeats=False
        )
        for option, value in (sub_options or {}).items():
            subscriber.setsockopt(option, value)
        self._subscriber = Subscriber(
            subscriber,
            self._on_publication,
            has_room=self._feed.has_room,
            wait_for_room=self._feed.wait_for_room,
            on_drained=self._on_drained,
        )
        self._rooms: dict[str, _Room] = {}
        """name_key(room) -> every room this session is in."""
        self._by_topic: dict[bytes, _Room] = {}
        self._pinger: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._online = asyncio.Event()
        """Set while logged in over a working connection; requests wait on it to retry."""
        self._token: str | None = None
        """The resume token of this session: memory only, never logged."""
        self._server: ServerInfo | None = None
        self.user: str | None = None
        """The logged-in user's name as registered, or None."""
        self.unread = 0
        """Direct messages that waited for this user, as the last login or resume said."""
        self._page = MAX_HISTORY_PAGE
        """Events asked for per ``history`` request; halved when a reply is too large."""
        self.repaired = 0
        """History pages fetched to fill gaps in room streams: a measure of what PUB/SUB
        dropped and the client repaired."""
        self._seen_directs: OrderedDict[int, None] = OrderedDict()
        self._unacked: list[int] = []
        """Direct messages to this user shown or queued here, to acknowledge (`dm_ack`)."""
        self._acker: asyncio.Task[None] | None = None
        self._closed = False
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._auth_timeout = max(timeout, AUTH_TIMEOUT)

    def _new_dealer(self) -> zmq.asyncio.Socket:
        """A DEALER with a key pair of its own: each connection is a new one to the broker."""
        return open_socket(self._context, zmq.DEALER, CurveKeys.for_broker(self._server_key))

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
        max_events: int = DEFAULT_LIMIT,
        sub_options: Mapping[int, int] | None = None,
    ) -> ChatClient:
        """Connect to a broker and say ``hello``; raises `BrokerUnreachable`.

        With the wrong ``server_key`` the encrypted handshake never completes, so
        this fails the same way as an absent broker.
        """
        client = cls(
            host,
            port,
            context,
            timeout,
            server_key=server_key,
            max_events=max_events,
            sub_options=sub_options,
            connect_timeout=connect_timeout,
        )
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
        return sorted((room.name for room in self._rooms.values()), key=name_key)

    @property
    def online(self) -> bool:
        """Whether the session is up over a working connection (not reconnecting)."""
        return self._online.is_set()

    # --- account and session ------------------------------------------------------------

    async def register(self, user: str, password: str) -> str:
        """Create an account (does not log in); returns the name as registered."""
        result = await self._connection.request(Register(user, password), self._auth_timeout)
        return field(result, "user", str)

    async def login(self, user: str, password: str) -> str:
        """Start a session; returns the canonical user name and starts pinging.

        `unread` then says how many direct messages wait in the `inbox`.
        """
        result = await self._connection.call(
            Login(user, password), parse_session, self._auth_timeout
        )
        self._session_started(result)
        self._start_pinging()
        return result.user

    def _session_started(self, result: SessionResult, *, online: bool = True) -> None:
        self.user = result.user
        self.unread = result.unread
        self._token = result.token or None
        if online:
            self._online.set()

    async def logout(self) -> list[str]:
        """End this session (leaving every room); returns the rooms it left."""
        try:
            if self._unacked:  # what was shown here counts as delivered first
                ids, self._unacked = self._unacked[:MAX_HISTORY_PAGE], []
                with contextlib.suppress(ZchatError):
                    await self._connection.request(DmAck(ids))
            result = await self._connection.request(Logout())
        finally:
            await self._forget_session()
        return list(strings(result, "rooms"))

    # --- rooms ----------------------------------------------------------------------------

    async def rooms(self) -> list[RoomInfo]:
        """Every room with its member count, sorted by name (fetched page by page)."""
        found: list[RoomInfo] = []
        after = ""
        while True:
            page, more = await self._connection.call(ListRooms(after), parse_rooms)
            found.extend(page)
            if not (more and page):
                return found
            after = page[-1].name

    async def join(self, room: str, history: int = DEFAULT_HISTORY) -> JoinedRoom:
        """Join (or create) a room; its events then arrive through `events`.

        `events` yields the `JoinedRoom` first, then the last ``history`` events
        as `HistoryEvent`s, then live traffic, each event once and in order. Only
        members learn a room's topic (in the reply), so the SUB socket subscribes
        as the reply is applied, in the DEALER reader before any later frame is
        read; whatever is published before the subscription takes effect shows as
        a gap at the next event or announcement and is fetched with ``history``.
        """
        request = Join(room, history)
        while True:
            try:
                return await self._connection.call(
                    request, lambda result: self._joined(parse_join(result))
                )
            except FrameTooLarge:
                if not request.history:
                    raise
                # Long messages: the snapshot did not fit in a frame, so ask for less.
                request = Join(room, request.history // 2)

    def _joined(self, joined: JoinResult, *, fresh_keys: bool = False) -> JoinedRoom:
        """Apply a join reply, in the DEALER reader, before any later frame is read."""
        room = self._rooms.get(name_key(joined.room.name))
        if room is not None and room.topic != joined.topic:  # a broker with other topics
            self._by_topic.pop(room.topic, None)
            self._subscriber.unsubscribe(room.topic)
            room.topic = joined.topic
            self._by_topic[room.topic] = room
        stream = self._subscriber.subscribe(joined.topic, joined.room.name)
        if room is None:
            room = _Room(joined.room.name, joined.topic, Sequencer(joined.room.name))
            self._rooms[name_key(room.name)] = room
            self._by_topic[room.topic] = room
            self._feed.put(joined.room)  # the room's first event here: its history follows
        released = (
            stream.replace_keys(joined.kid, joined.key)
            if fresh_keys
            else stream.activate(joined.kid, joined.key)
        )
        for event in released:  # buffered: they arrived before the snapshot
            self._apply(room, room.sequencer.live(event))
        self._apply(room, room.sequencer.snapshot(joined.room.seq, joined.events))
        return joined.room

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

    async def send(
        self, room: str, text: str, *, msg_id: str | None = None, deadline: float = SEND_DEADLINE
    ) -> int:
        """Post a message; returns the ``seq`` it was stored under.

        The message gets an id (or keeps ``msg_id``); across a timeout or an
        outage it is sent again with that id until the broker acknowledges it, so
        it is stored once. After ``deadline`` seconds without success this raises
        `RequestTimedOut`.
        """
        request = Send(room, text, msg_id or new_msg_id())
        result = await self._until_delivered(request, deadline)
        return field(result, "seq", int)

    async def history(self, room: str, from_seq: int, to_seq: int) -> HistoryResult:
        """One page (at most 500) of a room's stored events with seq in the range.

        `zchat.protocol.errors.InvalidRange` for a range that is negative,
        reversed or too large; `NotMember` for a room this session is not in.
        """
        return await self._connection.call(History(room, from_seq, to_seq), parse_history)

    async def earlier(self, room: str, count: int = DEFAULT_HISTORY) -> HistoryPage:
        """Up to ``count`` events before the earliest shown in ``room``, oldest first.

        Each call pages further back. The page says when the start of the room,
        or the start of what the broker still keeps, is reached.
        """
        joined = self._rooms.get(name_key(room))
        if joined is None:
            Members(room)  # an impossible name is InvalidName, as the broker would say
            raise NotMember(f"you are not in room {room}")
        name = joined.name
        fetch = joined.sequencer.page_start(count)
        if fetch is None:
            return HistoryPage(name, (), at_start=True, pruned=False)
        found: list[RoomEvent] = []
        start = fetch.from_seq
        while True:  # a page ends early (more) when its events would not fit in one frame
            try:
                result = await self.history(name, start, fetch.to_seq)
            except FrameTooLarge:  # a broker that does not end pages early: ask for fewer
                if found or fetch.from_seq == fetch.to_seq:
                    raise
                fetch = Fetch(
                    fetch.from_seq + (fetch.to_seq - fetch.from_seq + 1) // 2, fetch.to_seq
                )
                start = fetch.from_seq
                continue
            found.extend(result.events)
            if not (result.more and result.events):
                break
            start = result.events[-1].seq + 1
        events = tuple(joined.sequencer.paged_back(fetch, found))
        pruned = not events or events[0].seq > fetch.from_seq
        if pruned:
            joined.sequencer.earliest = 1  # nothing older is left to page to
        return HistoryPage(name, events, at_start=fetch.from_seq == 1 and not pruned, pruned=pruned)

    async def ping(self) -> None:
        """Renew the lease now (the ping task does this on its own)."""
        await self._connection.request(Ping())

    # --- direct messages ------------------------------------------------------------------

    async def dm(
        self, user: str, text: str, *, msg_id: str | None = None, deadline: float = SEND_DEADLINE
    ) -> DirectSent:
        """Send a private message to every session of ``user``; stored for when they are away.

        Retried across outages like `send`; `NoSuchUser` if there is no such user.
        """
        request = DirectMessage(user, text, msg_id or new_msg_id())
        return parse_dm(await self._until_delivered(request, deadline))

    async def inbox(self) -> list[DirectReceived]:
        """The direct messages that waited for this user and were not shown here yet,
        oldest first; they are acknowledged (count as delivered) once returned."""
        messages: list[DirectReceived] = []
        after = 0
        while True:
            page, more = await self._connection.call(Inbox(after), parse_inbox)
            for message in page:
                if self._first_sight(message.id):
                    messages.append(message)
                self._acknowledge(message.id)
            if not more or not page:
                self.unread = 0
                return messages
            after = page[-1].id

    def _first_sight(self, message_id: int) -> bool:
        """Remember a direct message as shown; False if it was already."""
        if message_id in self._seen_directs:
            return False
        self._seen_directs[message_id] = None
        if len(self._seen_directs) > SEEN_DIRECTS:
            self._seen_directs.popitem(last=False)
        return True

    def _acknowledge(self, message_id: int) -> None:
        """Tell the broker (soon, in one `dm_ack` with others) that this session has it."""
        self._unacked.append(message_id)
        if self._acker is None or self._acker.done():
            self._acker = asyncio.create_task(self._send_acks(), name="zchat-dm-ack")

    async def _send_acks(self) -> None:
        """Acknowledge what was shown, a page at a time, once the session is up; an ack
        that never arrives only means the message comes again (and is shown once)."""
        await asyncio.sleep(0)  # gather the acks of one burst of events into one request
        while self._unacked:
            ids, self._unacked = self._unacked[:MAX_HISTORY_PAGE], self._unacked[MAX_HISTORY_PAGE:]
            try:
                await self._wait_online()
                await self._connection.request(DmAck(ids))
            except TRANSIENT as exc:
                if self.user is None:
                    self._unacked.clear()  # logged out: the next login shows them again
                    return
                self._unacked[:0] = ids  # again, once the session is back
                self._trouble_from(exc)
                if isinstance(exc, RequestTimedOut):
                    await asyncio.sleep(self._timeout)
            except UnknownOperation:  # an older broker: it counted them delivered already
                self._unacked.clear()
            except ZchatError as exc:  # closed, or logged out: the next login shows them again
                log.debug("could not acknowledge direct messages: %s", exc.message)
                self._unacked.clear()

    # --- events ---------------------------------------------------------------------------

    async def next_event(self, timeout: float | None = None) -> ClientEvent:
        """The next room event or notice; `TimeoutError` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await self._feed.get()

    async def events(self) -> AsyncIterator[ClientEvent]:
        """Every room event and notice, until the client is closed."""
        while True:
            try:
                yield await self.next_event()
            except ClientClosed:
                return

    def _on_private_event(self, event: Event) -> None:
        """Route a ``room_key``, ``direct`` or ``session_ended`` from the DEALER reader."""
        if isinstance(event, RoomKey):
            room = self._rooms.get(name_key(event.room))
            stream = self._subscriber.stream(room.topic) if room is not None else None
            if room is None or stream is None:
                log.debug("ignoring a key for room %r this session is not in", event.room)
                return
            for opened in stream.add_key(event.kid, event.key):
                self._apply(room, room.sequencer.live(opened))
        elif isinstance(event, Direct):
            if self._first_sight(event.id):
                self._feed.put(DirectReceived.of(event))
            if self.user is not None and name_key(event.recipient) == name_key(self.user):
                self._acknowledge(event.id)  # a copy of one's own needs none
        elif isinstance(event, SessionEnded) and event.reason == "replaced":
            # Its token was used on another connection: there is nothing left to resume.
            self._give_up("the session was taken up by another connection")
        elif isinstance(event, SessionEnded):
            self._trouble(f"the broker ended the session: {event.reason}")
        else:
            log.debug("ignoring event %r", event)

    def _on_publication(self, topic: bytes, publications: list[Publication]) -> None:
        room = self._by_topic.get(topic)
        if room is None:
            return  # a join in flight: its stream holds sealed events until the reply
        for publication in publications:
            if isinstance(publication, RoomEvent):
                self._apply(room, room.sequencer.live(publication))
            else:
                self._apply(room, room.sequencer.announced(publication.seq))

    def _on_drained(self) -> None:
        """The reader paused and has now read all that waited: the tail may be lost."""
        for room in list(self._rooms.values()):
            self._apply(room, room.sequencer.probe())

    def _apply(self, room: _Room, step: Step) -> None:
        for event in step.shown:
            self._feed.put(event)
        if step.fetch is not None:
            room.fetcher = asyncio.create_task(
                self._fetch(room, step.fetch), name=f"zchat-history-{room.name}"
            )

    async def _fetch(self, room: _Room, fetch: Fetch | None) -> None:
        """Fetch what the room's sequencer is missing, page by page, until it has it all."""
        while fetch is not None:
            await self._feed.wait_for_room()
            to_seq = min(fetch.to_seq, fetch.from_seq + self._page - 1)
            try:
                await self._wait_online()
                page = await self.history(room.name, fetch.from_seq, to_seq)
            except FrameTooLarge:
                self._page = max(1, self._page // 2)  # long messages: ask for fewer
                continue
            except TRANSIENT as exc:
                if self.user is None:
                    return  # the session is over, and the room with it
                self._trouble_from(exc)
                continue  # the same range again, once the session is back
            except ClientClosed:
                return
            except ZchatError as exc:
                log.warning("cannot fetch the history of %s: %s", room.name, exc)
                room.sequencer.fetch_failed()
                return
            self.repaired += 1
            covered = page.events[-1].seq if page.more and page.events else to_seq
            step = room.sequencer.fetched(page.events, covered, page.last_seq)
            for event in step.shown:
                self._feed.put(event)
            fetch = step.fetch

    async def _wait_online(self, timeout: float | None = None) -> None:
        if self._closed:
            raise ClientClosed("the client was closed")
        if self.user is None:
            raise NotLoggedIn("not logged in")
        if not self._online.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._online.wait()
            except TimeoutError as exc:
                raise RequestTimedOut("the broker did not come back in time") from exc
            if self._closed:
                raise ClientClosed("the client was closed")

    async def _until_delivered(self, request: Send | DirectMessage, deadline: float) -> Any:
        """Make ``request`` until it gets a reply, across outages, within ``deadline`` seconds."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline
        while True:
            left = give_up - loop.time()
            if left <= 0:
                raise RequestTimedOut(
                    f"the broker did not acknowledge the message within {deadline:g} s"
                )
            try:
                await self._wait_online(left)
                return await self._connection.request(request, min(left, self._timeout))
            except TRANSIENT as exc:
                if self.user is None:
                    raise
                self._trouble_from(exc)

    # --- losing and recovering the session -----------------------------------------------

    def _on_disconnect(self) -> None:
        if self._online.is_set():
            self._trouble("the connection to the broker was lost")

    def _trouble_from(self, exc: Exception) -> None:
        if isinstance(exc, RequestTimedOut):
            return  # a slow broker is not a lost one: the pings decide that
        self._trouble(exc.message if isinstance(exc, ZchatError) else str(exc))

    def _trouble(self, reason: str) -> None:
        """Start recovering the session, unless already at it (or never logged in)."""
        if self._closed or self.user is None or self._token is None:
            if self.user is not None and not self._closed:
                self._give_up(reason)  # without a token there is nothing to resume
            return
        if self._recovery is not None and not self._recovery.done():
            return
        self._online.clear()
        self._feed.put(Disconnected(reason))
        self._recovery = asyncio.create_task(self._recover(), name="zchat-reconnect")

    def _give_up(self, reason: str) -> None:
        """The session cannot be resumed: report it ended; the user must log in again."""
        if self.user is None:
            return
        self._drop_session_state()
        self._feed.put(SessionEnded(reason))

    async def _recover(self) -> None:
        """Reconnect with backoff, resume, rejoin every room and let waiting sends go."""
        for delay in backoff.delays():
            await asyncio.sleep(delay)
            token = self._token
            if token is None or self.user is None:
                return
            try:
                await self._connection.replace(self._new_dealer())
                await self._connection.call(Hello(), parse_hello, self._connect_timeout)
                result = await self._connection.call(
                    Resume(token), parse_session, self._auth_timeout
                )
                self._session_started(result, online=False)  # not until the rooms are back
                rooms = await self._rejoin()
            except (ConnectionLost, RequestTimedOut, NotLoggedIn, SessionExpired) as exc:
                log.info("reconnecting: %s", exc.message)
                continue
            except ClientClosed:
                return
            except ZchatError as exc:  # bad_resume_token, above all
                self._give_up(exc.message)
                return
            self._online.set()
            self._feed.put(Reconnected(tuple(rooms), result.unread))
            if result.unread:
                await self._deliver_inbox()
            return

    async def _rejoin(self) -> list[str]:
        """Join every room again on the new session; each sequencer fetches its gap."""
        rejoined = []
        for room in list(self._rooms.values()):
            while True:
                try:
                    await self._connection.call(Join(room.name), partial(self._rejoined, room))
                except (ConnectionLost, RequestTimedOut, NotLoggedIn, SessionExpired):
                    raise
                except RateLimited as exc:  # many rooms, or sessions, rejoining at once
                    await asyncio.sleep((exc.retry_ms or 0) / 1000 or REJOIN_WAIT_S)
                    continue
                except ZchatError as exc:
                    log.warning("could not rejoin %s: %s", room.name, exc)
                    self._forget_room(room.name)
                    break
                rejoined.append(room.name)
                break
        return rejoined

    def _rejoined(self, room: _Room, result: dict[str, Any]) -> JoinedRoom:
        return self._joined(parse_join(result), fresh_keys=True)

    async def _deliver_inbox(self) -> None:
        """Fetch the direct messages that waited during an outage and pass them on."""
        try:
            for message in await self.inbox():
                self._feed.put(message)
        except ZchatError as exc:
            log.warning("could not fetch the inbox: %s", exc)

    def _forget_room(self, name: str) -> None:
        room = self._rooms.pop(name_key(name), None)
        if room is not None:
            self._by_topic.pop(room.topic, None)
            self._subscriber.unsubscribe(room.topic)
            _cancel(room.fetcher)

    def _drop_session_state(self) -> None:
        """Forget the session, its rooms and its token, without waiting for any task."""
        self.user = None
        self._token = None
        self._online.clear()
        for room in list(self._rooms.values()):
            self._forget_room(room.name)
        self._subscriber.unsubscribe_all()
        for task in (self._pinger, self._recovery):
            if task is not asyncio.current_task():
                _cancel(task)
        self._pinger = self._recovery = None

    async def _forget_session(self) -> None:
        fetchers = [room.fetcher for room in self._rooms.values()]
        tasks = [*fetchers, self._pinger, self._recovery]
        self._drop_session_state()
        for task in tasks:
            if task is not None and task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # --- lease ----------------------------------------------------------------------------

    def _start_pinging(self) -> None:
        _cancel(self._pinger)
        self._pinger = asyncio.create_task(self._ping_forever(), name="zchat-pinger")

    async def _ping_forever(self) -> None:
        """Keep the lease alive; silence or a refused ping starts a reconnect."""
        interval = self.server.ping_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            if not self._online.is_set():
                continue
            try:
                await self._connection.request(Ping(), timeout=interval * 2)
            except RequestTimedOut:
                self._trouble("the broker is not answering")
            except (ConnectionLost, NotLoggedIn, SessionExpired) as exc:
                self._trouble(exc.message)
            except ClientClosed:
                return
            except ZchatError as exc:
                log.warning("ping refused: %s", exc)

    # --- closing --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close both sockets, stop every task, end `events`; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._online.set()  # wake anything waiting for the session, to find it closed
        tasks = [
            self._pinger,
            self._recovery,
            self._acker,
            *(room.fetcher for room in self._rooms.values()),
        ]
        self._pinger = self._recovery = self._acker = None
        for task in tasks:
            _cancel(task)
        for task in tasks:
            if task is not None and task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._connection.aclose()
        await self._subscriber.aclose()
        self._feed.close()
        if self._owns_context:
            self._context.term()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _cancel(task: asyncio.Task[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
