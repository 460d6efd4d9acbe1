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

import bisect
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zchat.protocol import (
    Direct,
    DirectMessage,
    DmAck,
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
    ServerKey,
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
    UnknownOperation,
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

from .admission import admit_resume, record_bad_token, record_login
from .membership import (
    bind_session,
    end_session,
    find_or_create_room,
    join_room,
    leave_room,
    new_room,
    publish_event,
    unbind_session,
)
from .outgoing import Failure, Outgoing, Result, Unicast
from .state import BrokerState, Connection, Room, Session
from .storage import DuplicateMessage, Storage, StorageError, StoredDirect, StoredEvent
from .throttle import BucketTable, TokenBucket, take_all

REPLY_EVENTS_BYTES = MAX_FRAME_BYTES - 4096
"""Room events one reply may carry, in bytes: the frame limit less room for the rest."""
ROW_OVERHEAD_BYTES = 32
"""A generous bound on msgpack's framing of one ``[seq, kind, user, ts_ms, text]`` row."""

DIRECT_OVERHEAD_BYTES = 64
"""A generous bound on msgpack's framing of one inbox entry beyond its names and text."""
ROOMS_PAGE = 256
"""Rooms one `rooms` reply lists: 256 entries of at most 128 bytes of name and ~30 of
framing stay far under the frame limit, however many rooms there are."""

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

    def spend(self, *budgets: tuple[TokenBucket, str]) -> None:
        """Take one token of each (bucket, what it counts), or `RateLimited` taking none."""
        refused = take_all(self.now_ms, *(bucket for bucket, _ in budgets))
        if refused is None:
            return
        what = next(what for bucket, what in budgets if bucket is refused)
        wait = refused.wait_ms()
        raise RateLimited(f"slow down: {what}; retry in {wait} ms", retry_ms=wait)

    def account_bucket(self, table: BucketTable) -> TokenBucket:
        """The caller's account's bucket of ``table``: all its sessions share it."""
        return table.bucket(name_key(self.member.user), self.now_ms)

    def messages(self) -> None:
        """Spend one message (a room or direct message) of the session's and account's budget."""
        account = self.account_bucket(self.state.messages_by_account)
        refused = take_all(self.now_ms, self.member.send_bucket, account)
        if refused is not None:  # the words are made only for a refusal: this is the hot path
            rate = self.state.settings.limits.message_rate
            whose = " per account" if refused is account else ""
            wait = refused.wait_ms()
            raise RateLimited(
                f"slow down: at most {rate:g} messages per second{whose}; retry in {wait} ms",
                retry_ms=wait,
            )

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


def check_name_free(storage: Storage, user: str) -> None:
    """`NameTaken` if ``user`` is registered (ignoring case) or looks like a registered name."""
    if storage.account(user) is not None:
        raise NameTaken(f"username {user} is taken")
    like = storage.account_like(user)
    if like is not None:
        raise NameTaken(f"username {user} looks like {like}, who is registered")


def handle_register(ctx: Context, request: NewAccount) -> dict[str, Any]:
    """register {user, password} -> {user}"""
    check_name_free(ctx.state.storage, request.user)
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
    """resume {token} -> {user, session, resume, unread}

    A token is single-use: the reply carries the next one, and the session the token
    belonged to, if it is still live, moves to this connection (its rooms with it), so
    one login is at most one live session however often its token is replayed.
    """
    if ctx.session is not None:
        raise AlreadyLoggedIn(f"this connection is already logged in as {ctx.session.user}")
    state, peer = ctx.state, ctx.connection.peer
    admit_resume(state, peer, ctx.now_ms)
    used = token_hash(request.token)
    user = state.storage.use_resume_token(used, ctx.now_ms, ctx.now_ms + RESUME_TOKEN_TTL_MS)
    if user is None:
        record_bad_token(state, peer, ctx.now_ms)
        raise BadResumeToken("that session cannot be resumed; log in with your password")
    session = state.sessions_by_token.get(used)
    if session is None or session.connection.peer != peer:
        check_session_room(state, peer)  # before the token is spent
    token = state.new_token()
    fresh = token_hash(token)
    state.storage.revoke_resume_token(used)
    state.storage.add_resume_token(fresh, user, ctx.now_ms + RESUME_TOKEN_TTL_MS)
    logger.info("%s resumed a session from <%s>", user, peer)
    if session is None:
        return start_session(ctx, user, token)
    unread = state.storage.count_undelivered(user)  # read before anything changes
    take_over(state, session, ctx.connection, fresh, ctx.now_ms, ctx.outbox)
    return session_reply(session, token, unread)


def start_session(ctx: Context, user: str, token: str) -> dict[str, Any]:
    """Bind a new session for ``user`` to the caller's connection (login and resume)."""
    state, peer = ctx.state, ctx.connection.peer
    limits = state.settings.limits
    check_session_room(state, peer)
    unread = state.storage.count_undelivered(user)  # read before anything changes
    session = Session(
        state.new_session_id(),
        user,
        ctx.connection,
        last_seen_ms=ctx.now_ms,
        send_bucket=TokenBucket.full(limits.message_rate, limits.message_burst, ctx.now_ms),
        resume_hash=token_hash(token),
    )
    bind_session(state, session)
    state.sessions_by_user.setdefault(name_key(user), {})[session.session_id] = session
    return session_reply(session, token, unread)


def session_reply(session: Session, token: str, unread: int) -> dict[str, Any]:
    return {
        "user": session.user,
        "session": session.session_id,
        "resume": token,
        "unread": unread,
    }


def check_session_room(state: BrokerState, peer: str) -> None:
    """`LimitReached` if ``peer`` holds as many sessions as one address may."""
    limit = state.settings.limits.sessions_per_address
    if state.sessions_per_peer.get(peer, 0) >= limit:
        raise LimitReached(f"at most {limit} sessions per address")


def take_over(
    state: BrokerState,
    session: Session,
    connection: Connection,
    resume_hash: str,
    now_ms: int,
    outbox: list[Outgoing],
) -> None:
    """Move a live session to ``connection`` under a new token; its old connection is told
    (if anyone is still there) and hears nothing of the session again."""
    old = session.connection
    unbind_session(state, session)
    outbox.append(Unicast(old.routing_id, SessionEnded(reason="replaced")))
    session.connection = connection
    session.resume_hash = resume_hash
    session.last_seen_ms = now_ms
    bind_session(state, session)


def handle_logout(ctx: Context, request: Logout) -> dict[str, Any]:
    """logout {} -> {rooms: [left]}"""
    session = ctx.member
    ctx.state.storage.revoke_resume_token(session.resume_hash)  # this session's only; stored first
    rooms = end_session(ctx.state, session, ctx.now_ms, ctx.outbox)
    logger.info("%s logged out from <%s>", session.user, ctx.connection.peer)
    return {"rooms": rooms}


def handle_rooms(ctx: Context, request: ListRooms) -> dict[str, Any]:
    """rooms {after?} -> {rooms: [{name, members}], more}"""
    state = ctx.state
    if len(state.room_order) != len(state.rooms):  # a room was created (none are deleted)
        state.room_order = sorted(state.rooms)
    start = bisect.bisect_right(state.room_order, name_key(request.after)) if request.after else 0
    page = [state.rooms[key] for key in state.room_order[start : start + ROOMS_PAGE]]
    return {
        "rooms": [{"name": room.name, "members": len(room.user_sessions)} for room in page],
        "more": start + ROOMS_PAGE < len(state.room_order),
    }


def handle_join(ctx: Context, request: Join) -> dict[str, Any]:
    """join {room} -> {room, created, topic, kid, key, seq, members}"""
    state, key = ctx.state, name_key(request.room)
    limits = state.settings.limits
    if key not in ctx.member.rooms:  # joining again changes nothing and costs nothing
        if len(ctx.member.rooms) >= limits.rooms_per_session:
            raise LimitReached(f"at most {limits.rooms_per_session} rooms at once; leave one first")
        budgets = [(ctx.account_bucket(state.memberships_by_account), "too many joins and leaves")]
        if key not in state.rooms:
            if len(state.rooms) >= limits.max_rooms:
                raise LimitReached(
                    f"the broker holds its most rooms ({limits.max_rooms}); join an existing one"
                )
            budgets.append(
                (ctx.account_bucket(state.room_creations_by_account), "too many new rooms")
            )
        ctx.spend(*budgets)
    room, created = find_or_create_room(state, request.room)
    join_room(state, ctx.member, room, ctx.now_ms, ctx.outbox)
    snapshot = (
        fitting(
            state.storage.events(
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
    ctx.spend((ctx.account_bucket(ctx.state.memberships_by_account), "too many joins and leaves"))
    leave_room(ctx.state, ctx.member, room, ctx.now_ms, ctx.outbox)
    return {"room": room.name}


def handle_members(ctx: Context, request: Members) -> dict[str, Any]:
    """members {room} -> {room, members}"""
    room = ctx.joined_room(request.room)
    return {"room": room.name, "members": sorted(room.user_sessions)}


def handle_send(ctx: Context, request: Send) -> dict[str, Any]:
    """send {room, text} -> {room, seq, ts_ms}"""
    room = ctx.joined_room(request.room)
    ctx.messages()
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
    ctx.messages()
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
    # Undelivered until a session of the recipient acknowledges it (dm_ack): a session whose
    # client just died still looks alive until its lease ends.
    event = Direct(number, sender.user, account.name, ctx.now_ms, request.text)
    recipients = state.sessions_by_user.get(name_key(account.name), {})
    copies = {**state.sessions_by_user.get(name_key(sender.user), {}), **recipients}
    copies.pop(sender.session_id, None)
    ctx.outbox.extend(Unicast(s.connection.routing_id, event) for s in copies.values())
    return {"id": number, "user": account.name, "ts_ms": ctx.now_ms, "duplicate": False}


def handle_inbox(ctx: Context, request: Inbox) -> dict[str, Any]:
    """inbox {after?} -> {messages: [{id, sender, recipient, ts_ms, text}], more}"""
    storage, user = ctx.state.storage, ctx.member.user
    waiting = storage.undelivered(user, MAX_HISTORY_PAGE + 1, after=max(request.after, 0))
    page: list[StoredDirect] = []
    budget = REPLY_EVENTS_BYTES
    for message in waiting[:MAX_HISTORY_PAGE]:
        budget -= DIRECT_OVERHEAD_BYTES + sum(
            len(part.encode()) for part in (message.sender, message.recipient, message.text)
        )
        if budget < 0:
            break
        page.append(message)
    if request.after < 0:  # an older client, which never acknowledges: delivered as sent
        storage.mark_delivered([message.id for message in page], user)
    return {
        "messages": [
            {"id": m.id, "sender": m.sender, "recipient": m.recipient, "ts_ms": m.ts_ms,
             "text": m.text}
            for m in page
        ],
        "more": len(page) < len(waiting),
    }  # fmt: skip


def handle_dm_ack(ctx: Context, request: DmAck) -> dict[str, Any]:
    """dm_ack {ids} -> {} (ids of messages to others, or unknown, are ignored)"""
    ctx.state.storage.mark_delivered(request.ids, ctx.member.user)
    return {}


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
    DmAck: handle_dm_ack,
    Ping: handle_ping,
}


NOT_SERVED_HERE: dict[type[Request], str] = {
    ServerKey: "server_key is answered by the key service (the request port + 2 unless the "
    "broker says otherwise), not by the request port",
}
"""Valid requests this socket does not serve, and where to ask instead."""


def dispatch(
    state: BrokerState,
    connection: Connection,
    request_id: int,
    request: Request,
    now_ms: int,
) -> list[Outgoing]:
    """Run one decoded request; returns the reply and everything else to send.

    A request that fails changes nothing: its writes are rolled back to the savepoint
    taken before it, and nothing it would have sent leaves (handlers store before they
    change the state in memory, so a failed store leaves that as it was too)."""
    outbox: list[Outgoing] = []
    session = session_of(state, connection, now_ms, outbox)
    settled = len(outbox)  # what ending a stale session sent stands, whatever follows
    ctx = Context(state, connection, now_ms, session, outbox)
    reply: Result | Failure
    state.storage.savepoint()
    try:
        handler = HANDLERS.get(type(request))
        if handler is None:
            raise UnknownOperation(
                NOT_SERVED_HERE.get(type(request), f"{request.OP} is not served here")
            )
        if request.NEEDS_SESSION and session is None:
            if (connection.routing_id, connection.client_key) in state.expired:
                raise SessionExpired("your session expired; log in again")
            raise NotLoggedIn(f"log in before {request.OP}")
        if session is not None:
            session.last_seen_ms = now_ms
        reply = Result(request_id, handler(ctx, request))
    except ZchatError as error:
        reply = Failure(request_id, error)
    except StorageError as error:  # the shell stops the broker: the store refuses to commit
        state.failures.report(f"{request.OP}: storage", now_ms, "%s failed: %s", request.OP, error)
        reply = Failure(request_id, InternalError(f"{request.OP} failed; try again"))
    except Exception as error:  # a bug costs one request an internal_error, never the broker
        kind = f"{request.OP}: {type(error).__name__}"
        state.failures.report_exception(kind, now_ms, "%s failed", request.OP)
        reply = Failure(request_id, InternalError(f"{request.OP} failed; try again"))
    if isinstance(reply, Failure):
        state.storage.rollback_to_savepoint()
        del outbox[settled:]
    else:
        state.storage.release_savepoint()
    outbox.insert(0, Unicast(connection.routing_id, reply))
    return outbox


def session_of(
    state: BrokerState, connection: Connection, now_ms: int, outbox: list[Outgoing]
) -> Session | None:
    """The caller's session: the one on its routing id, if its CURVE key is the caller's.

    A routing id with another key means the session's own connection is gone (libzmq
    ignores a second connection claiming an id in use) and someone else took the id:
    that session ends as if its lease had run out (its token still resumes it) and the
    caller learns nothing of it.
    """
    session = state.sessions.get(connection.routing_id)
    if session is None or session.connection.client_key == connection.client_key:
        return session
    end_session(state, session, now_ms, outbox)
    logger.warning(
        "%s's session ended: another key from <%s> claimed its connection's routing id",
        session.user,
        connection.peer,
    )
    return None


def expire_sessions(state: BrokerState, now_ms: int) -> list[Outgoing]:
    """End every session not heard from within the lease; members see each one leave."""
    outbox: list[Outgoing] = []
    deadline = now_ms - state.settings.lease_ms
    for session in [s for s in state.sessions.values() if s.last_seen_ms < deadline]:
        end_session(state, session, now_ms, outbox)
        state.remember_expired(session.connection)
        outbox.append(Unicast(session.connection.routing_id, SessionEnded(reason="expired")))
        logger.info("%s timed out from <%s>", session.user, session.connection.peer)
    return outbox


def load_state(state: BrokerState) -> BrokerState:
    """Fill a fresh state with the stored rooms, creating the `default` room if missing.

    Each room gets a new key, numbered after the newest it ever had."""
    for stored in state.storage.rooms():
        state.add_room(new_room(state, stored.name, stored.last_seq, stored.kid))
    state.add_room(find_or_create_room(state, DEFAULT_ROOM)[0])
    state.storage.commit()
    return state
