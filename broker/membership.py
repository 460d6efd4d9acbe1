"""Room membership changes: join, leave, end a session, and the room stream they write.

Every change that takes someone out of a room replaces the room's key and hands
the new one to the members who remain, so only current members can open what
is published next. The replacement is made once per broker batch, however many
sessions left the room in it (`schedule_rekey`, then `rotate_keys` as the batch
ends): churn costs one key per member per batch, not one per leave.
"""

from __future__ import annotations

import logging

from zchat.protocol import RoomCipher, RoomEventKind, RoomKey, announcement
from zchat.protocol.validation import name_key

from .outgoing import Outgoing, Publish, RoomPost, Unicast
from .state import BrokerState, Room, Session
from .storage import StoredEvent

logger = logging.getLogger(__name__)

ANNOUNCE_FOR_MS = 1_000
"""How long after a room's last event its latest seq keeps being announced."""


def find_or_create_room(state: BrokerState, name: str) -> tuple[Room, bool]:
    """The room of that name (ignoring case), creating and storing it if needed."""
    key = name_key(name)
    room = state.rooms.get(key)
    if room is not None:
        return room, False
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
    cipher = room.next_cipher or room.cipher  # after a leave: the key the leaver never gets
    outbox.append(RoomPost(room.topic, cipher, seq, (kind, user, now_ms, text)))
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
    """Take a session out of a room, rekey it (as the batch ends), and announce the user's
    last session leaving."""
    del room.sessions[session.session_id]
    session.rooms.discard(name_key(room.name))
    remaining = room.user_sessions[session.user] - 1
    if remaining:
        room.user_sessions[session.user] = remaining
    else:
        del room.user_sessions[session.user]
    schedule_rekey(state, room)
    if not remaining:
        publish_event(state, room, RoomEventKind.LEFT, session.user, now_ms, outbox)
        logger.info("%s left room [%s] from <%s>", session.user, room.name, session.connection.peer)


def schedule_rekey(state: BrokerState, room: Room) -> None:
    """Seal whatever the room posts from now on with a new key that nobody has yet
    (`publish_event` uses it); `rotate_keys` hands it out when the batch ends."""
    if room.next_cipher is None:
        room.next_cipher = RoomCipher(room.cipher.kid + 1, state.new_key())
        state.rekey_due[name_key(room.name)] = room


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
    """Take a session out of every room and forget it; returns the names of the rooms left."""
    left = []
    for key in sorted(session.rooms):
        room = state.rooms[key]
        leave_room(state, session, room, now_ms, outbox)
        left.append(room.name)
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
