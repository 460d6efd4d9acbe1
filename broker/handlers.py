"""The broker core: one handler per request, and `dispatch`, which runs them.

``dispatch(state, connection, request_id, request, now_ms) -> list[Outgoing]``
is the whole interface: the shell decodes, dispatches and sends what comes back.
Handlers return their result map and append anything else (publications, key
events) to the outbox; the preconditions (logged in or not) are checked once,
here in `dispatch`, from the request type.

`register` and `login` reach the core as `NewAccount` and `CheckedLogin`: the
shell hashes or verifies the password on a worker thread first, because
Argon2 is too slow for the event loop.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zchat.protocol import (
    Direct,
    DirectMessage,
    Hello,
    History,
    Inbox,
    Join,
    Leave,
    ListRooms,
    Logout,
    Members,
    Ping,
    Request,
    Resume,
    RoomEventKind,
    Send,
    SessionEnded,
    ZchatError,
)
from zchat.protocol.errors import (
    AlreadyLoggedIn,
    BadCredentials,
    BadResumeToken,
    InternalError,
    LimitReached,
    NameTaken,
    NoSuchUser,
    NotLoggedIn,
    NotMember,
    RateLimited,
    SessionExpired,
)
from zchat.protocol.limits import (
    DEFAULT_ROOM,
    MAX_FRAME_BYTES,
    MAX_HISTORY_PAGE,
    MAX_NAME_CHARS,
    MAX_TEXT_BYTES,
    PROTOCOL_VERSION,
)
from zchat.protocol.validation import name_key

from .admission import record_login
from .membership import end_session, find_or_create_room, join_room, leave_room, publish_event
from .outgoing import Failure, Outgoing, Result, Unicast
from .state import BrokerState, Connection, Room, Session
from .storage import DuplicateMessage, StoredDirect, StoredEvent
from .throttle import TokenBucket

REPLY_EVENTS_BYTES = MAX_FRAME_BYTES - 4096
"""Room events one reply may carry, in bytes: the frame limit less room for the rest."""
ROW_OVERHEAD_BYTES = 32
"""A generous bound on msgpack's framing of one ``[seq, kind, user, ts_ms, text]`` row."""

RESUME_TOKEN_TTL_MS = 7 * 24 * 3600 * 1000
"""A resume token unused for this long stops working."""


def token_hash(token: str) -> str:
    """What the broker keeps of a resume token: a copy of the database cannot resume anyone."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewAccount(Request):
    """A `register` whose password the shell has hashed."""

    OP = "register"
    NEEDS_SESSION = False
    user: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CheckedLogin(Request):
    """A `login` for ``user`` the shell has checked: ``account`` is the registered name, or None."""

    OP = "login"
    NEEDS_SESSION = False
    user: str
    account: str | None


@dataclass(slots=True)
class Context:
    """What a handler works with: the state, the caller, the time, and the outbox."""

    state: BrokerState
    connection: Connection
    now_ms: int
    session: Session | None
    outbox: list[Outgoing]

    @property
    def member(self) -> Session:
        """The caller's session (dispatch guarantees one for session requests)."""
        assert self.session is not None
        return self.session

    def joined_room(self, name: str) -> Room:
        """A room the caller's session is in, or `NotMember`."""
        key = name_key(name)
        if key not in self.member.rooms:
            raise NotMember(f"you are not in room [{name}]")
        return self.state.rooms[key]


def handle_hello(ctx: Context, request: Hello) -> dict[str, Any]:
    """hello {} -> {protocol, server, pub_port, ping_interval_ms, lease_ms, limits}"""
    settings = ctx.state.settings
    return {
        "protocol": PROTOCOL_VERSION,
        "server": settings.server,
        "pub_port": settings.pub_port,
        "ping_interval_ms": settings.ping_interval_ms,
        "lease_ms": settings.lease_ms,
        "max_text_bytes": MAX_TEXT_BYTES,
        "max_name_chars": MAX_NAME_CHARS,
    }


def handle_register(ctx: Context, request: NewAccount) -> dict[str, Any]:
    """register {user, password} -> {user}"""
    like = ctx.state.storage.account_like(request.user)
    if like is not None and name_key(like) != name_key(request.user):
        raise NameTaken(f"username {request.user} looks like {like}, who is registered")
    if not ctx.state.storage.add_account(request.user, request.password_hash):
        raise NameTaken(f"username {request.user} is taken")
    logger.info("%s registered from <%s>", request.user, ctx.connection.peer)
    return {"user": request.user}


def handle_login(ctx: Context, request: CheckedLogin) -> dict[str, Any]:
    """login {user, password} -> {user, session, resume, unread}"""
    if ctx.session is not None:
        raise AlreadyLoggedIn(f"this connection is already logged in as {ctx.session.user}")
    record_login(
        ctx.state, request.user, ctx.connection.peer, request.account is not None, ctx.now_ms
    )
    if request.account is None:
        raise BadCredentials("wrong username or password")
    token = ctx.state.new_token()
    ctx.state.storage.add_resume_token(
        token_hash(token), request.account, ctx.now_ms + RESUME_TOKEN_TTL_MS
    )
    logger.info("%s logged in from <%s>", request.account, ctx.connection.peer)
    return start_session(ctx, request.account, token)


def handle_resume(ctx: Context, request: Resume) -> dict[str, Any]:
    """resume {token} -> {user, session, resume, unread}"""
    if ctx.session is not None:
        raise AlreadyLoggedIn(f"this connection is already logged in as {ctx.session.user}")
    user = ctx.state.storage.use_resume_token(
        token_hash(request.token), ctx.now_ms, ctx.now_ms + RESUME_TOKEN_TTL_MS
    )
    if user is None:
        raise BadResumeToken("that session cannot be resumed; log in with your password")
    logger.info("%s resumed a session from <%s>", user, ctx.connection.peer)
    return start_session(ctx, user, request.token)


def start_session(ctx: Context, user: str, token: str) -> dict[str, Any]:
    """Bind a new session for ``user`` to the caller's connection (login and resume)."""
    state, peer = ctx.state, ctx.connection.peer
    limits = state.settings.limits
    sessions_here = state.sessions_per_peer.get(peer, 0)
    if sessions_here >= limits.sessions_per_address:
        raise LimitReached(f"at most {limits.sessions_per_address} sessions per address")
    session = Session(
        state.new_session_id(),
        user,
        ctx.connection,
        last_seen_ms=ctx.now_ms,
        send_bucket=TokenBucket.full(limits.message_rate, limits.message_burst, ctx.now_ms),
        resume_hash=token_hash(token),
    )
    state.sessions[ctx.connection.routing_id] = session
    state.sessions_by_user.setdefault(name_key(user), {})[session.session_id] = session
    state.sessions_per_peer[peer] = sessions_here + 1
    state.expired.pop(ctx.connection.routing_id, None)
    return {
        "user": user,
        "session": session.session_id,
        "resume": token,
        "unread": state.storage.count_undelivered(user),
    }


def handle_logout(ctx: Context, request: Logout) -> dict[str, Any]:
    """logout {} -> {rooms: [left]}"""
    session = ctx.member
    rooms = end_session(ctx.state, session, ctx.now_ms, ctx.outbox)
    ctx.state.storage.revoke_resume_token(session.resume_hash)
    logger.info("%s logged out from <%s>", session.user, ctx.connection.peer)
    return {"rooms": rooms}


def handle_rooms(ctx: Context, request: ListRooms) -> dict[str, Any]:
    """rooms {} -> {rooms: [{name, members}]}"""
    rooms = sorted(ctx.state.rooms.values(), key=lambda room: name_key(room.name))
    return {"rooms": [{"name": room.name, "members": len(room.user_sessions)} for room in rooms]}


def handle_join(ctx: Context, request: Join) -> dict[str, Any]:
    """join {room} -> {room, created, topic, kid, key, seq, members}"""
    limit = ctx.state.settings.limits.rooms_per_session
    if len(ctx.member.rooms) >= limit and name_key(request.room) not in ctx.member.rooms:
        raise LimitReached(f"at most {limit} rooms at once; leave one first")
    room, created = find_or_create_room(ctx.state, request.room)
    join_room(ctx.state, ctx.member, room, ctx.now_ms, ctx.outbox)
    snapshot = (
        fitting(
            ctx.state.storage.events(
                room.name, max(1, room.seq - request.history + 1), room.seq, request.history
            ),
            newest=True,
        )
        if request.history and room.seq
        else []
    )
    return {
        "room": room.name,
        "created": created,
        "topic": room.topic,
        "kid": room.cipher.kid,
        "key": room.cipher.key,
        "seq": room.seq,
        "members": sorted(room.user_sessions),
        "events": [event_row(event) for event in snapshot],
    }


def event_row(event: StoredEvent) -> list[object]:
    """A stored event as the wire's ``[seq, kind, user, ts_ms, text]``."""
    return [event.seq, event.kind, event.user, event.ts_ms, event.text]


def fitting(events: list[StoredEvent], *, newest: bool = False) -> list[StoredEvent]:
    """The oldest (or ``newest``) events whose rows fit in one reply frame, in seq order."""
    kept: list[StoredEvent] = []
    budget = REPLY_EVENTS_BYTES
    for event in reversed(events) if newest else events:
        budget -= ROW_OVERHEAD_BYTES + len(event.user.encode()) + len(event.text.encode())
        if budget < 0:
            break
        kept.append(event)
    return kept[::-1] if newest else kept


def handle_leave(ctx: Context, request: Leave) -> dict[str, Any]:
    """leave {room} -> {room}"""
    room = ctx.joined_room(request.room)
    leave_room(ctx.state, ctx.member, room, ctx.now_ms, ctx.outbox)
    return {"room": room.name}


def handle_members(ctx: Context, request: Members) -> dict[str, Any]:
    """members {room} -> {room, members}"""
    room = ctx.joined_room(request.room)
    return {"room": room.name, "members": sorted(room.user_sessions)}


def handle_send(ctx: Context, request: Send) -> dict[str, Any]:
    """send {room, text} -> {room, seq, ts_ms}"""
    room = ctx.joined_room(request.room)
    bucket = ctx.member.send_bucket
    if not bucket.take(ctx.now_ms):
        raise RateLimited(
            f"slow down: at most {bucket.rate:g} messages per second; "
            f"retry in {bucket.wait_ms()} ms"
        )
    try:
        seq = publish_event(
            ctx.state,
            room,
            RoomEventKind.MESSAGE,
            ctx.member.user,
            ctx.now_ms,
            ctx.outbox,
            request.text,
            request.msg_id,
        )
    except DuplicateMessage as duplicate:
        return {
            "room": room.name,
            "seq": duplicate.number,
            "ts_ms": duplicate.ts_ms,
            "duplicate": True,
        }
    return {"room": room.name, "seq": seq, "ts_ms": ctx.now_ms, "duplicate": False}


def handle_history(ctx: Context, request: History) -> dict[str, Any]:
    """history {room, from_seq, to_seq} -> {room, events, more, last_seq}"""
    room = ctx.joined_room(request.room)
    to_seq = min(request.to_seq, room.seq)
    stored = ctx.state.storage.events(room.name, request.from_seq, to_seq, MAX_HISTORY_PAGE)
    events = fitting(stored)
    more = (
        bool(events)
        and events[-1].seq < to_seq
        and (len(events) < len(stored) or len(stored) == MAX_HISTORY_PAGE)
    )
    return {
        "room": room.name,
        "events": [event_row(event) for event in events],
        "more": more,
        "last_seq": room.seq,
    }


def handle_dm(ctx: Context, request: DirectMessage) -> dict[str, Any]:
    """dm {user, text, msg_id} -> {id, user, ts_ms, duplicate}"""
    state, sender = ctx.state, ctx.member
    account = state.storage.account(request.user)
    if account is None:
        raise NoSuchUser(f"there is no user {request.user}")
    stored = StoredDirect(0, sender.user, account.name, ctx.now_ms, request.text, request.msg_id)
    try:
        number = state.storage.add_direct(stored)
    except DuplicateMessage as duplicate:
        return {
            "id": duplicate.number,
            "user": account.name,
            "ts_ms": duplicate.ts_ms,
            "duplicate": True,
        }
    event = Direct(number, sender.user, account.name, ctx.now_ms, request.text)
    recipients = state.sessions_by_user.get(name_key(account.name), {})
    if recipients:
        state.storage.mark_delivered([number])
    copies = {**state.sessions_by_user.get(name_key(sender.user), {}), **recipients}
    copies.pop(sender.session_id, None)
    ctx.outbox.extend(Unicast(s.connection.routing_id, event) for s in copies.values())
    return {"id": number, "user": account.name, "ts_ms": ctx.now_ms, "duplicate": False}


def handle_inbox(ctx: Context, request: Inbox) -> dict[str, Any]:
    """inbox {} -> {messages: [{id, sender, recipient, ts_ms, text}], more}"""
    storage = ctx.state.storage
    waiting = storage.undelivered(ctx.member.user, MAX_HISTORY_PAGE + 1)
    page = waiting[:MAX_HISTORY_PAGE]
    storage.mark_delivered([message.id for message in page])
    return {
        "messages": [
            {"id": m.id, "sender": m.sender, "recipient": m.recipient, "ts_ms": m.ts_ms,
             "text": m.text}
            for m in page
        ],
        "more": len(waiting) > MAX_HISTORY_PAGE,
    }  # fmt: skip


def handle_ping(ctx: Context, request: Ping) -> dict[str, Any]:
    """ping {} -> {}"""
    return {}


Handler = Callable[[Context, Any], dict[str, Any]]

HANDLERS: dict[type[Request], Handler] = {
    Hello: handle_hello,
    NewAccount: handle_register,
    CheckedLogin: handle_login,
    Logout: handle_logout,
    ListRooms: handle_rooms,
    Join: handle_join,
    Leave: handle_leave,
    Members: handle_members,
    Send: handle_send,
    History: handle_history,
    Resume: handle_resume,
    DirectMessage: handle_dm,
    Inbox: handle_inbox,
    Ping: handle_ping,
}


def dispatch(
    state: BrokerState,
    connection: Connection,
    request_id: int,
    request: Request,
    now_ms: int,
) -> list[Outgoing]:
    """Run one decoded request; returns the reply and everything else to send."""
    outbox: list[Outgoing] = []
    session = state.sessions.get(connection.routing_id)
    ctx = Context(state, connection, now_ms, session, outbox)
    reply: Result | Failure
    try:
        handler = HANDLERS[type(request)]
        if request.NEEDS_SESSION and session is None:
            if connection.routing_id in state.expired:
                raise SessionExpired("your session expired; log in again")
            raise NotLoggedIn(f"log in before {request.OP}")
        if session is not None:
            session.last_seen_ms = now_ms
        reply = Result(request_id, handler(ctx, request))
    except ZchatError as error:
        reply = Failure(request_id, error)
    except Exception:  # a bug costs one request an internal_error, never the broker
        logger.exception("%s failed", request.OP)
        reply = Failure(request_id, InternalError(f"{request.OP} failed; try again"))
    outbox.insert(0, Unicast(connection.routing_id, reply))
    return outbox


def expire_sessions(state: BrokerState, now_ms: int) -> list[Outgoing]:
    """End every session not heard from within the lease; members see each one leave."""
    outbox: list[Outgoing] = []
    deadline = now_ms - state.settings.lease_ms
    for session in [s for s in state.sessions.values() if s.last_seen_ms < deadline]:
        end_session(state, session, now_ms, outbox)
        routing_id = session.connection.routing_id
        state.remember_expired(routing_id)
        outbox.append(Unicast(routing_id, SessionEnded(reason="expired")))
        logger.info("%s timed out from <%s>", session.user, session.connection.peer)
    return outbox


def load_state(state: BrokerState) -> BrokerState:
    """Fill a fresh state with the stored rooms, creating the `default` room if missing."""
    for stored in state.storage.rooms():
        state.add_room(stored.name, stored.last_seq)
    find_or_create_room(state, DEFAULT_ROOM)
    state.storage.commit()
    return state
