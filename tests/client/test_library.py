"""`ChatClient` against the real broker: talking, notices, key rotation, sessions, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import zmq
import zmq.asyncio

from tests.client.raw import RawPeer, spy
from tests.processes import RunningBroker
from zchat.client import ChatClient, ClientEvent
from zchat.client.events import HistoryEvent, RoomInfo
from zchat.protocol import (
    CannotOpen,
    Join,
    Leave,
    Login,
    Register,
    RoomCipher,
    RoomEvent,
    RoomEventKind,
    SealedBatch,
    parse_publication,
    room_topic,
)
from zchat.protocol.errors import BadCredentials, NameTaken, NotLoggedIn, NotMember
from zchat.protocol.sealing import topic_key

WAIT = 10.0


async def connect(context: zmq.asyncio.Context, broker: RunningBroker) -> ChatClient:
    return await ChatClient.connect(broker.host, broker.port, context, server_key=broker.server_key)


async def account(
    context: zmq.asyncio.Context, broker: RunningBroker, name: str, register: bool = True
) -> ChatClient:
    """A connected client logged in as ``name`` (registered first unless told not to)."""
    client = await connect(context, broker)
    if register:
        await client.register(name, f"password-{name}")
    await client.login(name, f"password-{name}")
    return client


async def next_matching(
    client: ChatClient,
    wanted: Callable[[ClientEvent], bool],
    timeout: float = WAIT,
    *,
    history: bool = False,
) -> ClientEvent:
    """The first event ``wanted`` accepts, skipping others (and the scrollback shown on
    joining, unless ``history``), within ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event()
            if isinstance(event, HistoryEvent) and not history:
                continue
            if wanted(event):
                return event


def room_event(kind: RoomEventKind, user: str, text: str = "") -> Callable[[ClientEvent], bool]:
    def wanted(event: ClientEvent) -> bool:
        return (
            isinstance(event, RoomEvent)
            and event.kind is kind
            and event.user == user
            and (not text or event.text == text)
        )

    return wanted


async def close_all(*clients: ChatClient) -> None:
    for client in clients:
        await client.aclose()


async def test_two_users_talk_and_see_each_other_come_and_go(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    bob = await account(context, broker, "bob")
    try:
        created = await alice.join("room1")
        assert (created.name, created.created, created.members) == ("room1", True, ("alice",))
        joined = await bob.join("room1")
        assert (joined.created, joined.members) == (False, ("alice", "bob"))

        await next_matching(alice, room_event(RoomEventKind.JOINED, "bob"))
        seq = await bob.send("room1", "hi alice")
        heard = await next_matching(alice, room_event(RoomEventKind.MESSAGE, "bob"))
        assert isinstance(heard, RoomEvent)
        assert (heard.room, heard.seq, heard.text) == ("room1", seq, "hi alice")
        echoed = await next_matching(bob, room_event(RoomEventKind.MESSAGE, "bob"))
        assert isinstance(echoed, RoomEvent) and echoed.seq == seq

        assert await bob.leave("room1") == "room1"
        await next_matching(alice, room_event(RoomEventKind.LEFT, "bob"))
        assert await alice.members("room1") == ["alice"]
        assert bob.joined_rooms == []
    finally:
        await close_all(alice, bob)


async def test_rooms_lists_every_room_with_its_member_count(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    try:
        await alice.join("room1")
        assert await alice.rooms() == [RoomInfo("default", 0), RoomInfo("room1", 1)]
    finally:
        await alice.aclose()


async def test_a_room_joined_in_another_spelling_still_streams(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    bob = await account(context, broker, "bob")
    try:
        await alice.join("Room1")
        joined = await bob.join("ROOM1")
        assert joined.name == "Room1"
        await alice.send("Room1", "can you read me")
        await next_matching(bob, room_event(RoomEventKind.MESSAGE, "alice", "can you read me"))
    finally:
        await close_all(alice, bob)


async def test_broker_errors_arrive_as_typed_exceptions(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    client = await connect(context, broker)
    try:
        with pytest.raises(NotLoggedIn):
            await client.rooms()
        await client.register("alice", "password-alice")
        with pytest.raises(NameTaken):
            await client.register("ALICE", "password-other")
        with pytest.raises(BadCredentials):
            await client.login("alice", "wrong-password")
        with pytest.raises(BadCredentials):
            await client.login("nobody", "password-alice")
        assert await client.login("Alice", "password-alice") == "alice"
        with pytest.raises(NotMember):
            await client.send("default", "I never joined")
    finally:
        await client.aclose()


async def test_one_account_in_two_clients_receives_in_both(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    laptop = await account(context, broker, "alice")
    phone = await account(context, broker, "alice", register=False)
    bob = await account(context, broker, "bob")
    try:
        for client in (laptop, phone, bob):
            await client.join("room1")
        assert await bob.members("room1") == ["alice", "bob"]
        await bob.send("room1", "to both of you")
        for client in (laptop, phone):
            await next_matching(client, room_event(RoomEventKind.MESSAGE, "bob", "to both of you"))
    finally:
        await close_all(laptop, phone, bob)


async def test_logout_ends_only_that_session(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    laptop = await account(context, broker, "alice")
    phone = await account(context, broker, "alice", register=False)
    bob = await account(context, broker, "bob")
    try:
        for client in (laptop, phone, bob):
            await client.join("room1")
        assert await laptop.logout() == ["room1"]
        assert laptop.user is None and laptop.joined_rooms == []
        with pytest.raises(NotLoggedIn):
            await laptop.send("room1", "gone")

        await phone.send("room1", "still here")
        # Events come in order: had alice been announced as leaving, that came first.
        first = await next_matching(
            bob, lambda event: isinstance(event, RoomEvent) and event.user == "alice"
        )
        assert isinstance(first, RoomEvent)
        assert (first.kind, first.text) == (RoomEventKind.MESSAGE, "still here")
        assert await bob.members("room1") == ["alice", "bob"]
    finally:
        await close_all(laptop, phone, bob)


async def watch_room(
    context: zmq.asyncio.Context, broker: RunningBroker, speaker: ChatClient, room: str
) -> zmq.asyncio.Socket:
    """A stranger's SUB socket on everything, once it is seen to receive ``room``'s traffic."""
    subscriber = spy(context, f"tcp://{broker.host}:{broker.pub_port}", broker.server_key)
    async with asyncio.timeout(WAIT):
        while True:  # a subscription takes effect some time after it is made
            await speaker.send(room, "is anyone listening")
            if await subscriber.poll(100):
                await subscriber.recv_multipart()
                return subscriber


def broker_topic(broker: RunningBroker, room: str) -> bytes:
    """A room's topic as the broker derives it from its secret key (only it can)."""
    secret = (broker.data_dir / "broker.key_secret").read_text().strip().encode()
    return room_topic(topic_key(secret), room)


async def publication_with_seq(
    subscriber: zmq.asyncio.Socket, topic: bytes, seq: int
) -> SealedBatch:
    async with asyncio.timeout(WAIT):
        while True:
            seen, body = await subscriber.recv_multipart()
            if seen == topic:
                sealed = parse_publication(body)  # announcements ([seq] only) are skipped
                if isinstance(sealed, SealedBatch) and sealed.seq <= seq <= sealed.last_seq:
                    return sealed


def cannot_open(
    keys: list[tuple[int, bytes]], topic: bytes, room: str, sealed: SealedBatch
) -> bool:
    """True if no key, under its own kid or relabelled to the box's, opens the box."""
    for kid, key in keys:
        for cipher in (RoomCipher(kid, key), RoomCipher(sealed.kid, key)):
            try:
                cipher.open(topic, sealed, room)
            except CannotOpen:
                continue
            return False
    return True


async def test_a_former_member_cannot_read_what_is_said_after_leaving(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    mallory = RawPeer(context, broker.endpoint, broker.server_key)
    subscriber = None
    try:
        await alice.join("room1")
        await mallory.request(Register("mallory", "password-mallory"))
        await mallory.request(Login("mallory", "password-mallory"))
        joined = await mallory.request(Join("room1"))
        old_key = (joined["kid"], joined["key"])
        subscriber = await watch_room(context, broker, alice, "room1")
        await mallory.request(Leave("room1"))

        seq = await alice.send("room1", "now that mallory is gone")
        sealed = await publication_with_seq(subscriber, joined["topic"], seq)
        assert sealed.kid > old_key[0], "the key was not rotated when mallory left"
        assert cannot_open([old_key], joined["topic"], "room1", sealed)
        assert b"mallory is gone" not in sealed.box
        # ...while alice, who stayed, got the new key and reads it.
        await next_matching(
            alice, room_event(RoomEventKind.MESSAGE, "alice", "now that mallory is gone")
        )
    finally:
        if subscriber is not None:
            subscriber.close()
        mallory.close()
        await alice.aclose()


async def test_a_stranger_subscribed_to_everything_sees_only_boxes_it_cannot_open(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    bob = await account(context, broker, "bob")
    mallory = RawPeer(context, broker.endpoint, broker.server_key)
    subscriber = None
    try:
        await mallory.request(Register("mallory", "password-mallory"))
        await mallory.request(Login("mallory", "password-mallory"))
        own_room = await mallory.request(Join("room2"))  # a key mallory is entitled to
        keys = [(own_room["kid"], own_room["key"])]
        await alice.join("room1")
        await bob.join("room1")
        subscriber = await watch_room(context, broker, alice, "room1")

        for text in ("first secret", "second secret"):
            seq = await bob.send("room1", text)
            topic = broker_topic(broker, "room1")
            sealed = await publication_with_seq(subscriber, topic, seq)
            assert cannot_open(keys, topic, "room1", sealed)
            assert text.encode() not in sealed.box
            await next_matching(alice, room_event(RoomEventKind.MESSAGE, "bob", text))
    finally:
        if subscriber is not None:
            subscriber.close()
        mallory.close()
        await close_all(alice, bob)


async def test_events_ends_when_the_client_closes(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    seen: list[ClientEvent] = []

    async def consume() -> None:
        async for event in alice.events():
            seen.append(event)

    consumer = asyncio.create_task(consume())
    await alice.aclose()
    async with asyncio.timeout(WAIT):
        await consumer
    assert seen == []
