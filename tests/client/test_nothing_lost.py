"""Nothing lost, through `ChatClient` against the real broker: scrollback, gap repair for a
consumer that fell far behind, paging back, history errors, direct messages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from tests.client.raw import spy
from tests.client.test_library import WAIT, account, close_all, next_matching, room_event
from tests.processes import UNGATED, RunningBroker, start_broker
from tests.wire import WireClient
from zchat.client import ChatClient, ClientEvent
from zchat.client.events import DirectReceived, HistoryEvent
from zchat.protocol import (
    Join,
    ListRooms,
    RoomEvent,
    RoomEventKind,
    SealedBatch,
    encode_request,
    parse_publication,
)
from zchat.protocol.errors import InvalidRange, NoSuchUser, NotMember
from zchat.protocol.limits import MAX_HISTORY_PAGE

FAST = ("--message-rate", "100000", "--message-burst", "100000", *UNGATED)
"""Limits loose enough for a test to send thousands of messages at once."""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RunningBroker]:
    """A broker that lets a session send as fast as it can, with the smallest PUB queue."""
    running = start_broker(tmp_path / "broker-data", *FAST, "--pub-hwm", "100")
    try:
        yield running
    finally:
        code = running.stop()
    assert code == 0, f"broker exited with {code}:\n{running.output.text()}"


async def collect(client: ChatClient, count: int, timeout: float = WAIT) -> list[ClientEvent]:
    """The next ``count`` events."""
    async with asyncio.timeout(timeout):
        return [await client.next_event() for _ in range(count)]


async def room_events_until(
    client: ChatClient, text: str, timeout: float = WAIT
) -> list[RoomEvent]:
    """Every room event up to and including the message ``text``."""
    seen: list[RoomEvent] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event()
            if isinstance(event, RoomEvent):
                seen.append(event)
                if event.kind is RoomEventKind.MESSAGE and event.text == text:
                    return seen


async def send_many(client: ChatClient, room: str, texts: list[str], lanes: int = 16) -> None:
    """Send ``texts`` with up to ``lanes`` requests in flight; each must be acknowledged."""
    queue = list(reversed(texts))

    async def lane() -> None:
        while queue:
            await client.send(room, queue.pop())

    await asyncio.gather(*(lane() for _ in range(lanes)))


async def test_joining_shows_the_latest_history_first_then_live_traffic_once(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    bob = await account(context, broker, "bob")
    try:
        await alice.join("room1")
        for n in range(1, 61):
            await alice.send("room1", f"old {n}")
        joined = await bob.join("room1", history=20)
        await alice.send("room1", "live")
        seen = await room_events_until(bob, "live")

        past = [event for event in seen if isinstance(event, HistoryEvent)]
        assert len(past) == 20 and seen[:20] == past, "history comes first"
        assert [event.seq for event in past] == list(range(joined.seq - 19, joined.seq + 1))
        assert [event.text for event in past[:-1]] == [f"old {n}" for n in range(42, 61)]
        assert (past[-1].kind, past[-1].user) == (RoomEventKind.JOINED, "bob")
        assert all(event.ts_ms > 0 and event.user for event in past)
        live = seen[20:]
        assert [(event.text, isinstance(event, HistoryEvent)) for event in live] == [
            ("live", False)
        ]
        assert [event.seq for event in seen] == list(range(joined.seq - 19, joined.seq + 2))
    finally:
        await close_all(alice, bob)


async def test_paging_back_reaches_the_start_of_the_room(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    try:
        await alice.join("room1", history=0)
        for n in range(1, 31):
            await alice.send("room1", f"m{n}")
        bob = await account(context, broker, "bob")
        try:
            joined = await bob.join("room1", history=10)  # 22..31 and bob's join
            assert joined.seq == 32
            first = await bob.earlier("room1", 15)
            assert [event.seq for event in first.events] == list(range(8, 23))
            assert all(isinstance(event, HistoryEvent) for event in first.events)
            assert not first.at_start and not first.pruned
            second = await bob.earlier("ROOM1", 15)
            assert [event.seq for event in second.events] == list(range(1, 8))
            assert second.events[0].kind is RoomEventKind.JOINED and second.at_start
            third = await bob.earlier("room1", 15)
            assert third.events == () and third.at_start
        finally:
            await bob.aclose()
    finally:
        await alice.aclose()


async def test_history_errors_are_typed(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    bob = await account(context, broker, "bob")
    try:
        await alice.join("room1")
        await bob.join("room2")
        for bad in ((-1, 5), (0, 5), (10, 5), (1, 10**30)):
            with pytest.raises(InvalidRange):
                await alice.history("room1", *bad)
        with pytest.raises(InvalidRange):
            await alice.join("room1", history=-1)
        with pytest.raises(InvalidRange):
            await alice.join("room1", history=MAX_HISTORY_PAGE + 1)
        with pytest.raises(NotMember):
            await alice.history("room2", 1, 5)
        with pytest.raises(NotMember):
            await alice.earlier("room2")
        page = await alice.history("room1", 1, 2**63 - 1)
        assert [row.seq for row in page.events] == [1] and page.more is False

        await send_many(alice, "room1", [f"m{n}" for n in range(MAX_HISTORY_PAGE + 10)])
        capped = await alice.history("room1", 1, 10_000)
        assert [row.seq for row in capped.events] == list(range(1, MAX_HISTORY_PAGE + 1))
        assert capped.more and capped.last_seq == MAX_HISTORY_PAGE + 11
    finally:
        await close_all(alice, bob)


async def test_a_history_page_of_long_messages_fits_in_a_frame(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    try:
        await alice.join("room1", history=0)
        await send_many(alice, "room1", ["x" * 4000 for _ in range(40)])
        page = await alice.history("room1", 1, 100)  # 160 kB asked for: the page ends early
        assert page.events and page.events[0].seq == 1
    finally:
        await alice.aclose()


async def test_long_messages_are_still_repaired_and_shown_on_joining(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    """Pages and snapshots that would not fit in a frame come in pieces, and still join up."""
    alice = await account(context, broker, "alice")
    bob = await account(context, broker, "bob")
    try:
        await alice.join("room1", history=0)
        long = [f"{n} " + "y" * 4000 for n in range(40)]
        await send_many(alice, "room1", long, lanes=1)
        joined = await bob.join("room1", history=50)  # 41 events, 160 kB: the newest that fit
        await alice.send("room1", "live")
        seen = await room_events_until(bob, "live")
        assert [event.seq for event in seen] == list(range(seen[0].seq, joined.seq + 2))
        assert seen[0].seq > 1, "the snapshot was smaller than asked for"
        everything: list[RoomEvent] = list(seen)
        page = None
        while page is None or not page.at_start:
            page = await bob.earlier("room1", 50)
            everything = [*page.events, *everything]
        assert [event.seq for event in everything] == list(range(1, joined.seq + 2))
        assert [event.text for event in everything[1:41]] == long
    finally:
        await close_all(alice, bob)


async def test_a_consumer_that_falls_far_behind_still_sees_everything_once_in_order(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    """The slow client stops reading; ZeroMQ drops what its queues cannot hold; once it
    reads again it shows every message once, in order, fetching what was dropped."""
    slow = await ChatClient.connect(
        broker.host,
        broker.port,
        context,
        server_key=broker.server_key,
        max_events=20,
        sub_options={zmq.RCVHWM: 10, zmq.RCVBUF: 32_768},  # small queues on the way in too
    )
    senders = [await account(context, broker, name) for name in ("alice", "bob")]
    try:
        await slow.register("slow", "password-slow")
        await slow.login("slow", "password-slow")
        for sender in senders:
            await sender.join("room1", history=0)
        joined = await slow.join("room1", history=0)
        # 6 MB: more than the queues on the way hold (100 publications of up to 16 KiB
        # each on the broker, a kernel send buffer of up to 4 MB), so some is dropped.
        padding = "x" * 1000
        texts = [[f"{sender.user} {n} {padding}" for n in range(3000)] for sender in senders]
        # The slow client reads nothing while thousands of messages go out.
        await asyncio.gather(
            *(
                send_many(sender, "room1", lines)
                for sender, lines in zip(senders, texts, strict=True)
            )
        )
        final = await senders[0].send("room1", "the end")

        seen = await room_events_until(slow, "the end", timeout=45)
        assert [event.seq for event in seen] == list(range(joined.seq + 1, final + 1))
        said = [event.text for event in seen if event.kind is RoomEventKind.MESSAGE]
        assert sorted(said[:-1]) == sorted(texts[0] + texts[1])
        for sender, lines in zip(senders, texts, strict=True):
            assert [text for text in said if text.startswith(f"{sender.user} ")] == lines
        assert slow.repaired > 0, "nothing was dropped, so the test proved nothing"
    finally:
        await close_all(slow, *senders)


async def test_a_message_sent_again_with_its_id_is_stored_once(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    alice = await account(context, broker, "alice")
    try:
        await alice.join("room1", history=0)
        first = await alice.send("room1", "only once", msg_id="0123abcd")
        again = await alice.send("room1", "only once", msg_id="0123abcd")
        assert again == first
        after = await alice.send("room1", "next")
        assert after == first + 1
        seen = await room_events_until(alice, "next")
        assert [event.text for event in seen] == ["only once", "next"]
    finally:
        await alice.aclose()


def is_direct(event: ClientEvent) -> bool:
    return isinstance(event, DirectReceived)


async def test_a_direct_message_reaches_every_session_and_no_stranger(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    laptop = await account(context, broker, "alice")
    phone = await account(context, broker, "alice", register=False)
    bob = await account(context, broker, "bob")
    bob_phone = await account(context, broker, "bob", register=False)
    carol = await account(context, broker, "carol")
    subscriber = spy(context, f"tcp://{broker.host}:{broker.pub_port}", broker.server_key)
    try:
        await carol.join("room1", history=0)
        # The stranger's SUB is live once it hears the room's traffic.
        async with asyncio.timeout(WAIT):
            while not await subscriber.poll(100):
                await carol.send("room1", "is anyone listening")
        sent = await bob.dm("ALICE", "meet at noon")
        assert (sent.user, sent.duplicate) == ("alice", False)
        for client in (laptop, phone, bob_phone):
            got = await next_matching(client, is_direct)
            assert isinstance(got, DirectReceived)
            assert (got.id, got.sender, got.recipient, got.text) == (
                sent.id,
                "bob",
                "alice",
                "meet at noon",
            )
        await carol.send("room1", "marker")
        marker = await next_matching(carol, room_event(RoomEventKind.MESSAGE, "carol", "marker"))
        assert isinstance(marker, RoomEvent)
        heard: list[bytes] = []
        async with asyncio.timeout(WAIT):  # everything up to the marker, sent after the DM
            while True:
                frames = await subscriber.recv_multipart()
                heard.extend(frames)
                sealed = parse_publication(frames[-1])
                if isinstance(sealed, SealedBatch) and sealed.seq <= marker.seq <= sealed.last_seq:
                    break
        assert heard, "the stranger heard nothing at all, so it proves nothing"
        assert not any(b"meet at noon" in frame or b"alice" in frame for frame in heard)
        with pytest.raises(NoSuchUser):
            await bob.dm("nobody", "hello?")
        assert await carol.inbox() == []
    finally:
        subscriber.close()
        await close_all(laptop, phone, bob, bob_phone, carol)


async def test_direct_messages_wait_for_an_offline_user(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    carol = await account(context, broker, "carol")
    await carol.logout()
    bob = await account(context, broker, "bob")
    try:
        first = await bob.dm("carol", "are you there?")
        second = await bob.dm("carol", "call me")
        assert second.id > first.id
        await carol.login("carol", "password-carol")
        assert carol.unread == 2
        messages = await carol.inbox()
        assert [(m.sender, m.text, m.unread) for m in messages] == [
            ("bob", "are you there?", True),
            ("bob", "call me", True),
        ]
        assert carol.unread == 0
        assert await carol.inbox() == []
        await carol.logout()
        await carol.login("carol", "password-carol")
        assert carol.unread == 0
    finally:
        await close_all(carol, bob)


async def test_a_dm_retried_with_its_id_is_stored_once(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    bob = await account(context, broker, "bob")
    carol = await account(context, broker, "carol")
    await carol.logout()
    try:
        first = await bob.dm("carol", "just once", msg_id="dm-1")
        again = await bob.dm("carol", "just once", msg_id="dm-1")
        assert again.id == first.id and again.duplicate
        await carol.login("carol", "password-carol")
        assert carol.unread == 1
        assert [m.text for m in await carol.inbox()] == ["just once"]
    finally:
        await close_all(bob, carol)


async def test_a_direct_message_to_a_client_that_died_is_shown_at_the_next_login(
    broker: RunningBroker, context: zmq.asyncio.Context
) -> None:
    carol = await account(context, broker, "carol")
    await carol.aclose()  # dies without logging out: its session lives until the lease ends
    bob = await account(context, broker, "bob")
    again = None
    try:
        sent = await bob.dm("carol", "are you there?")
        again = await account(context, broker, "carol", register=False)
        assert again.unread == 1
        [message] = await again.inbox()
        assert (message.id, message.text) == (sent.id, "are you there?")
        live = await bob.dm("carol", "and now?")
        got = await next_matching(again, is_direct)
        assert isinstance(got, DirectReceived) and got.id == live.id
        assert await again.inbox() == [], "each message is shown once"
        await again.logout()  # what was shown is acknowledged first
        await again.login("carol", "password-carol")
        assert again.unread == 0
    finally:
        await close_all(bob, *([again] if again else []))


async def test_the_room_list_has_every_room_however_many_pages_it_takes(
    tmp_path: Path, context: zmq.asyncio.Context
) -> None:
    broker = start_broker(
        tmp_path / "data",
        *("--rooms-per-session", "400", "--membership-burst", "400", "--room-burst", "400"),
    )
    sync_context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    creator = WireClient(sync_context, broker)
    alice = None
    try:
        creator.sign_up("creator")
        names = [f"room{n:03d}" for n in range(300)]
        for n, name in enumerate(names):
            creator.dealer.send(encode_request(100 + n, Join(room=name)))
        assert all(creator.reply().error is None for _ in names)
        first = creator.ok(ListRooms())
        assert len(first["rooms"]) < 301 and first["more"] is True, "an old client: one page"
        alice = await account(context, broker, "alice")
        rooms = await alice.rooms()
        assert [room.name for room in rooms] == ["default", *names]
        assert {room.members for room in rooms[1:]} == {1}
    finally:
        creator.close()
        sync_context.term()
        if alice is not None:
            await alice.aclose()
        assert broker.stop() == 0
