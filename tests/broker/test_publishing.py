"""Sealing a batch's room events into as few publications as possible, without sockets."""

from __future__ import annotations

import pytest

from tests.broker.core import CoreHarness, publications
from zchat.broker.outgoing import Outgoing, Publish, Result, RoomPost, Unicast
from zchat.broker.publishing import seal_batches
from zchat.protocol import (
    CannotOpen,
    Join,
    Leave,
    RoomCipher,
    RoomEvent,
    RoomEventKind,
    RoomKey,
    SealedBatch,
    Send,
    room_topic,
)
from zchat.protocol.limits import MAX_BATCH_EVENTS, MAX_FRAME_BYTES, MAX_TEXT_BYTES

TOPIC = room_topic(bytes(32), "room1")
KEY = bytes(range(32))


def posts(
    cipher: RoomCipher, first_seq: int, texts: list[str], topic: bytes = TOPIC
) -> list[RoomPost]:
    return [
        RoomPost(topic, cipher, first_seq + n, (RoomEventKind.MESSAGE, "alice", 1, text))
        for n, text in enumerate(texts)
    ]


def opened(publication: Publish | Unicast, cipher: RoomCipher) -> list[RoomEvent]:
    assert isinstance(publication, Publish)
    return cipher.open(publication.topic, SealedBatch.parse(publication.body), "room1")


def test_a_rooms_events_of_one_batch_leave_as_one_publication_in_order() -> None:
    cipher = RoomCipher(1, KEY)
    [publication] = seal_batches(list(posts(cipher, 7, ["a", "b", "c"])))
    assert [(event.seq, event.text) for event in opened(publication, cipher)] == [
        (7, "a"),
        (8, "b"),
        (9, "c"),
    ]


def test_replies_keep_their_order_and_each_room_gets_its_own_publication() -> None:
    one, two = RoomCipher(1, KEY), RoomCipher(1, bytes(32))
    topic_two = room_topic(bytes(32), "room2")
    reply_a, reply_b = Unicast(b"a", Result(1, {})), Unicast(b"b", Result(2, {}))
    first, second = posts(one, 1, ["1", "2"]), posts(two, 5, ["5", "6"], topic_two)
    outbox: list[Outgoing] = [first[0], reply_a, second[0], first[1], reply_b, second[1]]
    sealed = seal_batches(outbox)
    assert sealed[:2] == [reply_a, reply_b]
    by_topic = {item.topic: item for item in sealed[2:] if isinstance(item, Publish)}
    assert len(sealed) == 4 and set(by_topic) == {TOPIC, topic_two}
    assert [e.text for e in opened(by_topic[TOPIC], one)] == ["1", "2"]
    assert [e.text for e in opened(by_topic[topic_two], two)] == ["5", "6"]


def test_ready_publications_such_as_announcements_pass_through() -> None:
    announcement = Publish(TOPIC, b"\x91\x05")
    assert seal_batches([announcement]) == [announcement]


def test_a_batch_is_split_at_the_most_events_a_publication_carries() -> None:
    cipher = RoomCipher(1, KEY)
    count = MAX_BATCH_EVENTS + 10
    sealed = seal_batches(list(posts(cipher, 1, [str(n) for n in range(count)])))
    assert [SealedBatch.parse(item.body).count for item in sealed if isinstance(item, Publish)] == [
        MAX_BATCH_EVENTS,
        10,
    ]
    seqs = [event.seq for item in sealed for event in opened(item, cipher)]
    assert seqs == list(range(1, count + 1))


def test_long_texts_are_split_so_every_publication_fits_a_frame() -> None:
    cipher = RoomCipher(1, KEY)
    texts = [chr(0x20AC) * (MAX_TEXT_BYTES // 3)] * 40  # 3 UTF-8 bytes per character
    sealed = seal_batches(list(posts(cipher, 1, texts)))
    assert len(sealed) > 1
    for item in sealed:
        assert isinstance(item, Publish) and len(item.body) <= MAX_FRAME_BYTES
    assert sum(len(opened(item, cipher)) for item in sealed) == 40


def test_a_gap_in_seqs_starts_a_new_publication() -> None:
    cipher = RoomCipher(1, KEY)
    outbox: list[Outgoing] = [*posts(cipher, 1, ["1", "2"]), *posts(cipher, 10, ["10"])]
    sealed = seal_batches(outbox)
    assert [[e.seq for e in opened(item, cipher)] for item in sealed] == [[1, 2], [10]]


def test_a_key_change_inside_a_batch_splits_it_and_the_leaver_cannot_open_what_follows() -> None:
    core = CoreHarness()
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, Join(room="room1"))
    joined = core.ok(bob, Join(room="room1"))
    kid, key = joined["kid"], joined["key"]
    assert isinstance(kid, int) and isinstance(key, bytes)
    bobs = RoomCipher(kid, key)
    # One broker batch: alice speaks, bob leaves (the key changes), alice speaks again.
    outbox = [
        *core.send(alice, Send(room="room1", text="before")),
        *core.send(bob, Leave(room="room1")),
        *core.send(alice, Send(room="room1", text="after")),
    ]
    before, after = publications(outbox)
    assert [e.text for e in opened(before, bobs)] == ["before"]
    with pytest.raises(CannotOpen):
        opened(after, bobs)
    newest = core.state.rooms["room1"].cipher
    assert [(e.kind, e.text) for e in opened(after, newest)] == [
        (RoomEventKind.LEFT, ""),
        (RoomEventKind.MESSAGE, "after"),
    ]


def test_churn_in_one_batch_rekeys_the_room_once_and_no_leaver_can_open_what_follows() -> None:
    core = CoreHarness()
    alice = core.login("alice")
    core.ok(alice, Join(room="room1"))
    churners = [core.login(f"c{n}") for n in range(20)]
    known: dict[bytes, set[tuple[int, bytes]]] = {}
    for churner in churners:  # each learns the room's key as it joins
        joined = core.ok(churner, Join(room="room1"))
        known[churner.routing_id] = {(joined["kid"], joined["key"])}  # type: ignore[misc]
    # One broker batch: every churner leaves, joins again and leaves again, alice speaks.
    requests = [(c, request) for c in churners for request in (Leave(room="room1"),)]
    requests += [(c, Join(room="room1")) for c in churners]
    requests += [(c, Leave(room="room1")) for c in churners]
    requests.append((alice, Send(room="room1", text="only for alice")))
    outbox = core.batch(*requests)
    for item in outbox:  # what each churner was handed in the batch (join replies, keys)
        if isinstance(item, Unicast) and item.routing_id in known:
            data = item.message.data if isinstance(item.message, Result) else {}
            if "key" in data:
                known[item.routing_id].add((data["kid"], data["key"]))
    keys = [i for i in outbox if isinstance(i, Unicast) and isinstance(i.message, RoomKey)]
    assert [k.routing_id for k in keys] == [alice.routing_id], "one new key, for alice only"
    newest = core.state.rooms["room1"].cipher
    assert isinstance(keys[0].message, RoomKey) and keys[0].message.kid == newest.kid
    sealed = publications(outbox)
    after_first_leave = [p for p in sealed if SealedBatch.parse(p.body).kid == newest.kid]
    assert after_first_leave, "everything from the first leave on is under the new key"
    texts = [e.text for p in after_first_leave for e in opened(p, newest)]
    assert "only for alice" in texts
    for ciphers in known.values():
        for kid, key in ciphers:
            for publication in after_first_leave:
                with pytest.raises(CannotOpen):
                    opened(publication, RoomCipher(kid, key))
    assert len(sealed) <= 2, "the batch's events go out under at most two keys"
