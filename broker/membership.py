"""Room membership changes: join, leave, end a session, and the room stream they write.

Every change that takes someone out of a room replaces the room's key and hands
the new one to the members who remain, so only current members can open what
is published next. The replacement is made once per broker batch, however many
sessions left the room in it (`_store_leave` numbers the next key, `_apply_leave`
seals with it, `rotate_keys` hands it out as the batch ends): churn costs one key
per member per batch, not one per leave.

Each change stores what it writes before it touches the state in memory, and a
change of several rooms stores for all of them first: a store that fails then
leaves memory as it was, and the request's savepoint undoes the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from zchat.protocol import RoomCipher, RoomEventKind, RoomKey, announcement, room_topic
from zchat.protocol.errors import NameTaken
from zchat.protocol.validation import check_new_name, name_key

from .outgoing import Outgoing, Publish, RoomPost, Unicast
from .state import BrokerState, Room, Session
from .storage import StoredEvent

logger = logging.getLogger(__name__)

ANNOUNCE_FOR_MS = 1_000
"""How long after a room's last event its latest seq keeps being announced."""


def find_or_create_room(state: BrokerState, name: str) -> tuple[Room, bool]:
    """The room of that name (ignoring case), or a new one, stored; a new room joins the
    state with its first member (`join_room`), so a join that fails leaves no room.

    A new room's name must pass `check_new_name` and not look like an existing
    room's (`NameTaken`), so no one makes a look-alike of a room to catch its members.
    """
    key = name_key(name)
    room = state.rooms.get(key)
    if room is not None:
        return room, False
    check_new_name("room", name)
    like = state.storage.room_like(name)
    if like is not None:
        raise NameTaken(f"room [{name}] looks like the existing room [{like}]")
    state.storage.add_room(name)
    return new_room(state, name, last_seq=0, last_kid=0), True


def new_room(state: BrokerState, name: str, last_seq: int, last_kid: int) -> Room:
    """A stored room as the state keeps it (not yet added), with a fresh key numbered after
    ``last_kid``, the newest it ever had (that key died with the broker that made it)."""
    topic = room_topic(state.topic_key, name)
    return Room(name, topic, last_seq, new_cipher(state, name, last_kid))


def publish_event(
    state: BrokerState,
    room: Room,
    kind: RoomEventKind,
    user: str,
    now_ms: int,
    outbox: list[Outgoing],
    text: str = "",
    msg_id: str = "",
) -> int:
    """Store the room's next event and post it for publishing; returns its sequence number.

    Raises `DuplicateMessage` (storing and publishing nothing) if the user already
    stored a message with this ``msg_id`` in this room.
    """
    event = StoredEvent(room.name, room.seq + 1, kind.value, user, now_ms, text, msg_id)
    state.storage.append_event(event)
    post_event(state, room, event, outbox)
    return event.seq


def post_event(state: BrokerState, room: Room, event: StoredEvent, outbox: list[Outgoing]) -> None:
    """Make a stored event the room's latest and post it for publishing (memory only)."""
    room.seq = event.seq
    posted = (RoomEventKind(event.kind), event.user, event.ts_ms, event.text)
    cipher = room.next_cipher or room.cipher  # after a leave: the key the leaver never gets
    outbox.append(RoomPost(room.topic, cipher, event.seq, posted))
    state.announcing[room.topic] = event.ts_ms + ANNOUNCE_FOR_MS


def announce_rooms(state: BrokerState, now_ms: int) -> list[Outgoing]:
    """Publish the latest seq of each room with recent traffic, so members see a lost tail."""
    outbox: list[Outgoing] = []
    for topic, until_ms in list(state.announcing.items()):
        outbox.append(Publish(topic, announcement(state.rooms_by_topic[topic].seq)))
        if until_ms < now_ms:
            del state.announcing[topic]
    return outbox


def join_room(
    state: BrokerState, session: Session, room: Room, now_ms: int, outbox: list[Outgoing]
) -> None:
    """Add a session to a room; the user's first session there is announced."""
    if session.session_id in room.sessions:
        return
    count = room.user_sessions.get(session.user, 0)
    if count == 0:  # stored before anything changes
        publish_event(state, room, RoomEventKind.JOINED, session.user, now_ms, outbox)
    if state.rooms.get(name_key(room.name)) is not room:
        state.add_room(room)
        logger.info("room [%s] created", room.name)
    room.sessions[session.session_id] = session
    session.rooms.add(name_key(room.name))
    room.user_sessions[session.user] = count + 1
    if count == 0:
        logger.info(
            "%s joined room [%s] from <%s>", session.user, room.name, session.connection.peer
        )


def leave_room(
    state: BrokerState, session: Session, room: Room, now_ms: int, outbox: list[Outgoing]
) -> None:
    """Take a session out of a room, rekey it, and announce the user's last session leaving."""
    _apply_leave(state, session, _store_leave(state, session, room, now_ms), outbox)


@dataclass(frozen=True, slots=True)
class _Leaving:
    """What one session leaving one room has stored, to be applied in memory."""

    room: Room
    cipher: RoomCipher | None
    """The room's next key, if this leave is the batch's first in the room."""
    event: StoredEvent | None
    """The leave event, when this was the user's last session in the room."""


def _store_leave(state: BrokerState, session: Session, room: Room, now_ms: int) -> _Leaving:
    """Store what leaving writes, changing nothing in memory."""
    event = None
    if room.user_sessions[session.user] == 1:
        kind = RoomEventKind.LEFT.value
        event = StoredEvent(room.name, room.seq + 1, kind, session.user, now_ms, "")
        state.storage.append_event(event)
    cipher = new_cipher(state, room.name, room.cipher.kid) if room.next_cipher is None else None
    return _Leaving(room, cipher, event)


def _apply_leave(
    state: BrokerState, session: Session, leaving: _Leaving, outbox: list[Outgoing]
) -> None:
    room = leaving.room
    del room.sessions[session.session_id]
    session.rooms.discard(name_key(room.name))
    remaining = room.user_sessions[session.user] - 1
    if remaining:
        room.user_sessions[session.user] = remaining
    else:
        del room.user_sessions[session.user]
    if leaving.cipher is not None:
        room.next_cipher = leaving.cipher
        state.rekey_due[name_key(room.name)] = room
    if leaving.event is not None:  # sealed with the new key: the leaver cannot read it
        post_event(state, room, leaving.event, outbox)
        logger.info("%s left room [%s] from <%s>", session.user, room.name, session.connection.peer)


def new_cipher(state: BrokerState, name: str, last_kid: int) -> RoomCipher:
    """A new key for room ``name``, numbered after ``last_kid`` (the number stored first)."""
    kid = last_kid + 1
    state.storage.set_room_kid(name, kid)
    return RoomCipher(kid, state.new_key())


def rotate_keys(state: BrokerState) -> list[Outgoing]:
    """End of a batch: every room a session left takes its new key, sent (over the ROUTER
    only) to each session in it now, so a session that left in the batch never gets it.

    Called by the shell before it seals the batch's posts; unicasts leave before them.
    """
    outbox: list[Outgoing] = []
    for room in state.rekey_due.values():
        assert room.next_cipher is not None
        room.cipher, room.next_cipher = room.next_cipher, None
        event = RoomKey(room=room.name, kid=room.cipher.kid, key=room.cipher.key)
        outbox.extend(Unicast(s.connection.routing_id, event) for s in room.sessions.values())
    state.rekey_due.clear()
    return outbox


def end_session(
    state: BrokerState, session: Session, now_ms: int, outbox: list[Outgoing]
) -> list[str]:
    """Take a session out of every room and forget it; returns the names of the rooms left.

    Every room's leave is stored before any is applied, so a failed store changes nothing."""
    rooms = [state.rooms[key] for key in sorted(session.rooms)]
    stored = [_store_leave(state, session, room, now_ms) for room in rooms]
    for leaving in stored:
        _apply_leave(state, session, leaving, outbox)
    left = [room.name for room in rooms]
    unbind_session(state, session)
    user_key = name_key(session.user)
    del state.sessions_by_user[user_key][session.session_id]
    if not state.sessions_by_user[user_key]:
        del state.sessions_by_user[user_key]
    return left


def bind_session(state: BrokerState, session: Session) -> None:
    """Index a session by its connection, its resume token and its address."""
    connection = session.connection
    state.sessions[connection.routing_id] = session
    state.sessions_by_token[session.resume_hash] = session
    state.sessions_per_peer[connection.peer] = state.sessions_per_peer.get(connection.peer, 0) + 1
    state.expired.pop((connection.routing_id, connection.client_key), None)


def unbind_session(state: BrokerState, session: Session) -> None:
    """Undo `bind_session`: nothing reaches the session's connection through the indexes."""
    connection = session.connection
    del state.sessions[connection.routing_id]
    state.sessions_by_token.pop(session.resume_hash, None)
    remaining = state.sessions_per_peer.pop(connection.peer) - 1
    if remaining:
        state.sessions_per_peer[connection.peer] = remaining
