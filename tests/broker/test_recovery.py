"""Nothing lost, in the pure core: history, snapshots, deduplication, resume, DMs, announcements."""

from __future__ import annotations

from tests.broker.core import CoreHarness, error_code, publications
from zchat.broker.handlers import CheckedLogin
from zchat.broker.membership import announce_rooms
from zchat.broker.outgoing import Unicast
from zchat.protocol import (
    Direct,
    DirectMessage,
    DmAck,
    ErrorCode,
    History,
    Inbox,
    Join,
    Logout,
    Resume,
    Send,
    parse_publication,
)
from zchat.protocol.codec import encode_result
from zchat.protocol.limits import MAX_FRAME_BYTES, MAX_HISTORY_PAGE
from zchat.protocol.sealing import Announcement


def test_history_pages_a_room_in_order_and_only_for_members(core: CoreHarness) -> None:
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, Join(room="room1"))
    for n in range(1, 11):
        core.ok(alice, Send(room="room1", text=f"m{n}"))
    page = core.ok(alice, History(room="room1", from_seq=3, to_seq=5))
    assert [row[0] for row in page["events"]] == [3, 4, 5]
    assert page["events"][0][1:] == ["msg", "alice", core.now_ms, "m2"]
    assert page["last_seq"] == 11 and page["more"] is False
    beyond = core.ok(alice, History(room="room1", from_seq=10, to_seq=2**63 - 1))
    assert [row[0] for row in beyond["events"]] == [10, 11]
    assert error_code(core.call(bob, History(room="room1", from_seq=1, to_seq=5))) == (
        ErrorCode.NOT_MEMBER
    )


def test_a_history_page_is_capped(core: CoreHarness) -> None:
    alice = core.login("alice")
    core.ok(alice, Join(room="big"))
    core.lift_message_limit(alice)
    for n in range(MAX_HISTORY_PAGE + 20):
        core.ok(alice, Send(room="big", text=f"m{n}"))
    page = core.ok(alice, History(room="big", from_seq=1, to_seq=10_000))
    assert len(page["events"]) == MAX_HISTORY_PAGE and page["more"] is True
    rest = core.ok(alice, History(room="big", from_seq=MAX_HISTORY_PAGE + 1, to_seq=10_000))
    assert rest["more"] is False and rest["events"][-1][0] == rest["last_seq"]


def test_join_returns_a_snapshot_of_recent_history(core: CoreHarness) -> None:
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, Join(room="room1"))
    for n in range(5):
        core.ok(alice, Send(room="room1", text=f"m{n}"))
    joined = core.ok(bob, Join(room="room1", history=3))
    assert [row[0] for row in joined["events"]] == [5, 6, 7]
    assert joined["events"][-1][1:3] == ["join", "bob"]
    assert joined["seq"] == 7
    assert core.ok(bob, Join(room="room1"))["events"] == []


def test_a_retried_send_is_stored_and_published_once(core: CoreHarness) -> None:
    alice = core.login("alice")
    core.ok(alice, Join(room="room1"))
    first = core.send(alice, Send(room="room1", text="hello", msg_id="m-1"))
    again = core.send(alice, Send(room="room1", text="hello", msg_id="m-1"))
    assert first[0].message.data["duplicate"] is False  # type: ignore[union-attr]
    assert again[0].message.data["duplicate"] is True  # type: ignore[union-attr]
    assert again[0].message.data["seq"] == first[0].message.data["seq"]  # type: ignore[union-attr]
    assert publications(again) == []
    assert core.state.rooms["room1"].seq == 2
    other = core.ok(alice, Send(room="room1", text="hello", msg_id="m-2"))
    assert other["seq"] == 3


def test_resume_restores_a_session_without_the_password(core: CoreHarness) -> None:
    core.login("first", "alice")
    laptop = core.connection("laptop")
    login = core.ok(laptop, CheckedLogin("alice", "alice"))
    token = login["resume"]
    assert isinstance(token, str) and len(token) == 64

    core.now_ms += 60_000
    core.expire()  # the laptop froze; its session is gone
    fresh = core.connection("laptop-again")
    resumed = core.ok(fresh, Resume(token=token))
    assert resumed["user"] == "alice"
    assert resumed["session"] != login["session"]
    assert core.ok(fresh, Join(room="room1"))["members"] == ["alice"]

    core.ok(fresh, Logout())
    for spent in (token, resumed["resume"]):
        assert isinstance(spent, str)
        assert error_code(core.call(core.connection("x"), Resume(token=spent))) == (
            ErrorCode.BAD_RESUME_TOKEN
        )


def test_tokens_are_stored_only_as_hashes(core: CoreHarness) -> None:
    conn = core.login("alice")
    core.ok(conn, Logout())
    token = core.ok(conn, CheckedLogin("alice", "alice"))["resume"]
    assert token not in str(core.storage._tokens)


def test_resume_with_an_unknown_or_expired_token_is_refused(core: CoreHarness) -> None:
    assert error_code(core.call(core.connection("c"), Resume(token="f" * 64))) == (
        ErrorCode.BAD_RESUME_TOKEN
    )
    conn = core.connection("d")
    token = core.ok(conn, CheckedLogin("bob", "bob"))["resume"]
    core.now_ms += 8 * 24 * 3600 * 1000
    assert error_code(core.call(core.connection("e"), Resume(token=token))) == (
        ErrorCode.BAD_RESUME_TOKEN
    )


def test_direct_messages_reach_every_session_and_wait_for_the_absent(core: CoreHarness) -> None:
    alice = core.login("alice")
    bob_phone, bob_laptop = core.login("bphone", "bob"), core.login("blaptop", "bob")
    out = core.send(alice, DirectMessage(user="BOB", text="psst"))
    events = {i.routing_id: i.message for i in out if isinstance(i, Unicast)}
    assert isinstance(events[bob_phone.routing_id], Direct)
    assert isinstance(events[bob_laptop.routing_id], Direct)
    assert alice.routing_id in events  # the reply; no copy for a sender with one session
    assert not isinstance(events[alice.routing_id], Direct)
    assert publications(out) == [], "direct messages never touch the publisher"
    [number] = [m.id for m in events.values() if isinstance(m, Direct)][:1]
    assert core.storage.count_undelivered("bob") == 1, "delivered only once a session has it"
    core.ok(alice, DmAck(ids=[number]))
    assert core.storage.count_undelivered("bob") == 1, "the sender cannot mark it delivered"
    core.ok(bob_phone, DmAck(ids=[number, 999]))
    assert core.storage.count_undelivered("bob") == 0

    core.ok(bob_phone, Logout())
    core.ok(bob_laptop, Logout())
    core.ok(alice, DirectMessage(user="bob", text="are you there?"))
    first = core.ok(alice, DirectMessage(user="bob", text="call me", msg_id="d1"))
    core.now_ms += 5_000  # the retry comes later; it is answered as the original was
    retry = core.ok(alice, DirectMessage(user="bob", text="call me", msg_id="d1"))
    assert retry["duplicate"] is True
    assert (retry["id"], retry["ts_ms"]) == (first["id"], first["ts_ms"])
    back = core.connection("bob-back")
    login = core.ok(back, CheckedLogin("bob", "bob"))
    assert login["unread"] == 2
    inbox = core.ok(back, Inbox())
    assert [m["text"] for m in inbox["messages"]] == ["are you there?", "call me"]
    assert core.ok(back, Inbox())["messages"] == []

    assert error_code(core.call(alice, DirectMessage(user="nobody", text="hi"))) == (
        ErrorCode.NO_SUCH_USER
    )


def test_rooms_with_traffic_are_announced_for_a_while_then_not(core: CoreHarness) -> None:
    alice = core.login("alice")
    core.ok(alice, Join(room="busy"))
    core.ok(alice, Join(room="quiet"))
    core.now_ms += 5_000
    assert len(announce_rooms(core.state, core.now_ms)) == 2, "each join is announced once"
    assert announce_rooms(core.state, core.now_ms + 200) == []
    core.ok(alice, Send(room="busy", text="hi"))
    [busy] = announce_rooms(core.state, core.now_ms + 200)
    assert busy.topic == core.state.rooms["busy"].topic  # type: ignore[union-attr]
    assert parse_publication(busy.body) == Announcement(2)  # type: ignore[union-attr]
    assert len(announce_rooms(core.state, core.now_ms + 1_200)) == 1, "the last one"
    assert announce_rooms(core.state, core.now_ms + 1_400) == []


def test_history_pages_and_snapshots_fit_in_one_frame(core: CoreHarness) -> None:
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, Join(room="room1"))
    core.lift_message_limit(alice, 1_000)
    for n in range(40):
        core.ok(alice, Send(room="room1", text=f"{n} " + "x" * 4000))
    page = core.ok(alice, History(room="room1", from_seq=1, to_seq=100))
    assert page["more"] is True and 10 < len(page["events"]) < 41
    assert [row[0] for row in page["events"]] == list(range(1, len(page["events"]) + 1))
    assert len(encode_result(1, page)) <= MAX_FRAME_BYTES
    rest = core.ok(alice, History(room="room1", from_seq=len(page["events"]) + 1, to_seq=100))
    assert rest["events"][0][0] == len(page["events"]) + 1

    joined = core.ok(bob, Join(room="room1", history=50))
    assert len(encode_result(2, joined)) <= MAX_FRAME_BYTES
    seqs = [row[0] for row in joined["events"]]
    assert seqs[-1] == joined["seq"] and seqs == list(range(seqs[0], seqs[-1] + 1)), "newest"
