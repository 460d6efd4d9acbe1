"""Reconnect and resume through `ChatClient`: a broker killed mid-conversation loses nothing
that was acknowledged, stores no retried message twice, and every client sees it all once."""

from __future__ import annotations

import asyncio
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio

from tests.client.test_library import WAIT, account, next_matching
from tests.processes import UNGATED, RunningBroker, start_broker
from zchat.client import ChatClient, ClientEvent
from zchat.client.events import Disconnected, Reconnected
from zchat.protocol import RoomEvent, RoomEventKind, SessionEnded
from zchat.protocol.errors import RateLimited

FAST = ("--message-rate", "100000", "--message-burst", "100000", *UNGATED)


def restart(first: RunningBroker, data: Path) -> RunningBroker:
    """The broker again on the same ports (and so, with the same data dir, the same key)."""
    return start_broker(
        data, *FAST, port=first.port, pub_port=first.pub_port, key_port=first.key_port
    )


@dataclass
class Talker:
    """A client in a steady conversation: sends, and records acks and everything it sees."""

    client: ChatClient
    joined_at: int
    acked: list[tuple[int, str]] = field(default_factory=list)
    seen: list[ClientEvent] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        assert self.client.user is not None
        return self.client.user

    async def talk(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            text = f"{self.name} says {n}"
            self.acked.append((await self.client.send("room1", text), text))
            self.progress.set()
            n += 1
            await asyncio.sleep(0.02)  # the pace of the conversation, not a synchronisation

    async def listen(self) -> None:
        async for event in self.client.events():
            self.seen.append(event)
            self.progress.set()

    async def until(self, condition: object, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():  # type: ignore[operator]
                self.progress.clear()
                await self.progress.wait()

    def room_seqs(self) -> list[int]:
        return [event.seq for event in self.seen if isinstance(event, RoomEvent)]


async def test_a_broker_killed_mid_conversation_loses_and_repeats_nothing(
    tmp_path: Path, context: zmq.asyncio.Context
) -> None:
    data = tmp_path / "broker-data"
    first = start_broker(data, *FAST)
    second: RunningBroker | None = None
    clients = [await account(context, first, name) for name in ("alice", "bob", "carol")]
    talkers = [Talker(c, (await c.join("room1", history=0)).seq) for c in clients]
    stop = asyncio.Event()
    listeners = [asyncio.create_task(t.listen()) for t in talkers]
    speakers = [asyncio.create_task(t.talk(stop)) for t in talkers]
    try:
        for talker in talkers:
            await talker.until(lambda t=talker: len(t.acked) >= 10)
        first.stop(signal.SIGKILL)
        for talker in talkers:
            await talker.until(lambda t=talker: any(isinstance(e, Disconnected) for e in t.seen))
        before = [len(talker.acked) for talker in talkers]
        second = restart(first, data)
        for talker, count in zip(talkers, before, strict=True):
            await talker.until(lambda t=talker, c=count: len(t.acked) >= c + 10, timeout=60)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*speakers), WAIT)

        observer = await account(context, second, "olive")
        try:
            await observer.join("room1", history=0)
            stored = []
            page = await observer.history("room1", 1, 2**63 - 1)
            stored.extend(page.events)
            while page.more:
                page = await observer.history("room1", stored[-1].seq + 1, 2**63 - 1)
                stored.extend(page.events)
        finally:
            await observer.aclose()
        final = stored[-1].seq
        assert [event.seq for event in stored] == list(range(1, final + 1))
        texts = [event.text for event in stored if event.kind is RoomEventKind.MESSAGE]
        assert len(texts) == len(set(texts)), "a retried send was stored twice"
        by_seq = {event.seq: event for event in stored}
        for talker in talkers:
            for seq, text in talker.acked:
                assert by_seq[seq].text == text, f"acknowledged {text!r} is not at {seq}"
            await talker.until(lambda t=talker: final in t.room_seqs(), timeout=30)
            # Every event after the client joined, once each, in order.
            assert talker.room_seqs() == list(range(talker.joined_at + 1, final + 1))
            notices = [type(e) for e in talker.seen if isinstance(e, Disconnected | Reconnected)]
            assert notices == [Disconnected, Reconnected]
    finally:
        stop.set()
        for task in speakers:
            task.cancel()
        for client in clients:
            await client.aclose()
        for task in listeners:
            await task
        await asyncio.gather(*speakers, return_exceptions=True)
        if second is not None:
            assert second.stop() == 0, second.output.text()


async def test_a_session_the_broker_forgot_ends_and_asks_for_a_login(
    tmp_path: Path, context: zmq.asyncio.Context
) -> None:
    """A restarted broker with another database (but the same key) refuses the token."""
    data = tmp_path / "broker-data"
    first = start_broker(data)
    alice = await account(context, first, "alice")
    second: RunningBroker | None = None
    try:
        await alice.join("room1", history=0)
        first.stop(signal.SIGKILL)
        await next_matching(alice, lambda event: isinstance(event, Disconnected))
        fresh = tmp_path / "fresh-data"
        fresh.mkdir(mode=0o700)
        for key_file in ("broker.key", "broker.key_secret"):
            shutil.copy2(data / key_file, fresh / key_file)
        second = start_broker(fresh, port=first.port, pub_port=first.pub_port)
        ended = await next_matching(alice, lambda event: isinstance(event, SessionEnded), 30)
        assert isinstance(ended, SessionEnded) and "log in" in ended.reason
        assert alice.user is None and alice.joined_rooms == []
        await alice.register("alice", "password-alice")
        await alice.login("alice", "password-alice")
        assert (await alice.join("room1")).created
    finally:
        await alice.aclose()
        if second is not None:
            assert second.stop() == 0


async def test_rejoining_many_rooms_waits_out_the_join_limit_and_keeps_every_room(
    tmp_path: Path, context: zmq.asyncio.Context
) -> None:
    data = tmp_path / "broker-data"
    tight = ("--membership-burst", "2", "--membership-rate", "4")
    first = start_broker(data, *tight)
    second: RunningBroker | None = None
    alice = await account(context, first, "alice")
    rooms = ["r1", "r2", "r3", "r4"]
    try:
        for room in rooms:
            while True:
                try:
                    await alice.join(room, history=0)
                    break
                except RateLimited as refused:  # the broker says how long; wait that long
                    await asyncio.sleep((refused.retry_ms or 250) / 1000)
        first.stop(signal.SIGKILL)
        await next_matching(alice, lambda event: isinstance(event, Disconnected))
        second = start_broker(
            data, *tight, port=first.port, pub_port=first.pub_port, key_port=first.key_port
        )
        back = await next_matching(alice, lambda e: isinstance(e, Reconnected), timeout=30)
        assert isinstance(back, Reconnected) and sorted(back.rooms) == rooms
        assert alice.joined_rooms == rooms
    finally:
        await alice.aclose()
        if second is not None:
            assert second.stop() == 0, second.output.text()
