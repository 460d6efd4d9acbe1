"""A joined room's key ring: held publications, announcements, refusal of what it cannot open.

Order and repeats are the sequencer's (tests/client/test_sequencer.py)."""

from __future__ import annotations

from zchat.client.rooms import MAX_HELD, RoomStream
from zchat.protocol import (
    Announcement,
    RoomCipher,
    RoomEventKind,
    announcement,
    new_room_key,
    room_topic,
)

TOPIC = room_topic(bytes(32), "room1")
KEY1, KEY2 = new_room_key(), new_room_key()


def publication(
    seq: int, text: str, kid: int = 1, key: bytes = KEY1, topic: bytes = TOPIC
) -> bytes:
    return RoomCipher(kid, key).seal(
        topic, seq, [(RoomEventKind.MESSAGE, "alice", 1000 + seq, text)]
    )


def texts(events: list) -> list[str]:  # type: ignore[type-arg]
    return [event.text for event in events]


def joined() -> RoomStream:
    stream = RoomStream(TOPIC, "room1")
    assert stream.activate(1, KEY1) == []
    return stream


def test_live_publications_open_into_events() -> None:
    stream = joined()
    [event] = stream.feed(publication(6, "hello"))
    assert (event.room, event.seq, event.kind, event.user, event.text) == (
        "room1",
        6,
        RoomEventKind.MESSAGE,
        "alice",
        "hello",
    )


def test_announcements_pass_through_without_a_key() -> None:
    assert RoomStream(TOPIC, "room1").feed(announcement(42)) == [Announcement(42)]
    assert joined().feed(announcement(7)) == [Announcement(7)]


def test_publications_before_the_join_reply_wait_for_it() -> None:
    stream = RoomStream(TOPIC, "room1")  # subscribed, join request in flight
    assert stream.feed(publication(5, "before")) == []
    assert stream.feed(publication(6, "after")) == []
    assert texts(stream.activate(1, KEY1)) == ["before", "after"]


def test_a_newer_key_publication_waits_for_its_room_key_event() -> None:
    stream = joined()
    assert stream.feed(publication(6, "rotated", kid=2, key=KEY2)) == []
    assert stream.feed(publication(7, "rotated too", kid=2, key=KEY2)) == []
    assert texts(stream.add_key(2, KEY2)) == ["rotated", "rotated too"]
    assert texts(stream.feed(publication(8, "later", kid=2, key=KEY2))) == ["later"]


def test_held_publications_are_bounded() -> None:
    stream = joined()
    for seq in range(1, MAX_HELD + 11):
        stream.feed(publication(seq, f"m{seq}", kid=2, key=KEY2))
    released = stream.add_key(2, KEY2)
    assert len(released) == MAX_HELD
    assert released[0].seq == 11


def test_tampered_or_foreign_publications_are_dropped() -> None:
    stream = joined()
    body = bytearray(publication(6, "hello"))
    body[-1] ^= 1
    assert stream.feed(bytes(body)) == []
    wrong_key = publication(6, "hello", kid=1, key=new_room_key())
    assert stream.feed(wrong_key) == []
    other_room = publication(6, "hello", topic=room_topic(bytes(32), "room2"))
    assert stream.feed(other_room) == []
    assert stream.feed(b"\x93not a publication") == []
    # Nothing was taken as seen: the genuine publication still opens.
    assert texts(stream.feed(publication(6, "hello"))) == ["hello"]


def test_a_publication_under_a_key_never_held_is_dropped() -> None:
    stream = RoomStream(TOPIC, "room1")
    stream.activate(3, KEY2)  # joined when the room was at key 3
    assert stream.feed(publication(6, "sealed before we joined", kid=2, key=KEY1)) == []


def test_old_keys_still_open_late_publications() -> None:
    stream = joined()
    stream.add_key(2, KEY2)
    assert texts(stream.feed(publication(6, "sealed before the rotation"))) == [
        "sealed before the rotation"
    ]


def test_fresh_keys_replace_every_old_one() -> None:
    stream = joined()
    stream.replace_keys(1, KEY2)  # a restarted broker reuses key id 1 for a new key
    assert stream.feed(publication(6, "old key")) == []
    assert texts(stream.feed(publication(7, "new key", key=KEY2))) == ["new key"]
