"""Room membership changes: join, leave, end a session, and the room stream they write.

Every change that takes someone out of a room replaces the room's key and hands
the new one to the members who remain, so only current members can open what
is published next.
"""

from __future__ import annotations

import logging

from zchat.protocol import RoomCipher, RoomEventKind, RoomKey, announcement
from zchat.protocol.errors import NameTaken
from zchat.protocol.validation import check_new_name, name_key

from .outgoing import Outgoing, Publish, RoomPost, Unicast
from .state import BrokerState, Room, Session
from .storage import StoredEvent

logger = logging.getLogger(__name__)

ANNOUNCE_FOR_MS = 1_000
"""How long after a room's last event its latest seq keeps being announced."""


def find_or_create_room(state: BrokerState, name: str) -> tuple[Room, bool]:
    """The room of that name (ignoring case), creating and storing it if needed.

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
    room = state.add_room(name, last_seq=0)
    logger.info("room [%s] created", name)
    return room, True


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
    seq = room.seq + 1
    state.storage.append_event(StoredEvent(room.name, seq, kind.value, user, now_ms, text, msg_id))
    room.seq = seq
    outbox.append(RoomPost(room.topic, room.cipher, seq, (kind, user, now_ms, text)))
    state.announcing[room.topic] = now_ms + ANNOUNCE_FOR_MS
    return seq


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
    room.sessions[session.session_id] = session
    session.rooms.add(name_key(room.name))
    count = room.user_sessions.get(session.user, 0)
    room.user_sessions[session.user] = count + 1
    if count == 0:
        publish_event(state, room, RoomEventKind.JOINED, session.user, now_ms, outbox)
        logger.info(
            "%s joined room [%s] from <%s>", session.user, room.name, session.connection.peer
        )


def leave_room(
    state: BrokerState, session: Session, room: Room, now_ms: int, outbox: list[Outgoing]
) -> None:
    """Take a session out of a room, rekey it, and announce the user's last session leaving."""
    del room.sessions[session.session_id]
    session.rooms.discard(name_key(room.name))
    remaining = room.user_sessions[session.user] - 1
    if remaining:
        room.user_sessions[session.user] = remaining
    else:
        del room.user_sessions[session.user]
    rotate_key(state, room, outbox)
    if not remaining:
        publish_event(state, room, RoomEventKind.LEFT, session.user, now_ms, outbox)
        logger.info("%s left room [%s] from <%s>", session.user, room.name, session.connection.peer)


def rotate_key(state: BrokerState, room: Room, outbox: list[Outgoing]) -> None:
    """Give the room a new key and send it to each member session (over the ROUTER only)."""
    room.cipher = RoomCipher(room.cipher.kid + 1, state.new_key())
    event = RoomKey(room=room.name, kid=room.cipher.kid, key=room.cipher.key)
    outbox.extend(Unicast(member.connection.routing_id, event) for member in room.sessions.values())


def end_session(
    state: BrokerState, session: Session, now_ms: int, outbox: list[Outgoing]
) -> list[str]:
    """Take a session out of every room and forget it; returns the names of the rooms left."""
    left = []
    for key in sorted(session.rooms):
        room = state.rooms[key]
        leave_room(state, session, room, now_ms, outbox)
        left.append(room.name)
    del state.sessions[session.connection.routing_id]
    user_key = name_key(session.user)
    del state.sessions_by_user[user_key][session.session_id]
    if not state.sessions_by_user[user_key]:
        del state.sessions_by_user[user_key]
    peer = session.connection.peer
    remaining = state.sessions_per_peer.pop(peer) - 1
    if remaining:
        state.sessions_per_peer[peer] = remaining
    return left
