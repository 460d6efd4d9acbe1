"""Abuse limits in the pure core: buckets, failure counters, admission, caps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.broker.core import CoreHarness
from zchat.broker.admission import admit_login, admit_registration, record_login
from zchat.broker.handlers import ROOMS_PAGE, CheckedLogin, NewAccount
from zchat.broker.membership import find_or_create_room
from zchat.broker.outgoing import Failure
from zchat.broker.throttle import FailureCounter, Limits, TokenBucket, take_all
from zchat.protocol import (
    DirectMessage,
    DmAck,
    ErrorCode,
    Inbox,
    Join,
    Leave,
    ListRooms,
    Logout,
    Send,
    encode_result,
)
from zchat.protocol.errors import TooManyAttempts
from zchat.protocol.limits import MAX_FRAME_BYTES


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket.full(rate=10, burst=3, now_ms=0)
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert 0 < bucket.wait_ms() <= 101
    assert not bucket.take(50)
    assert bucket.take(100), "one token per 100 ms at 10/s"
    assert bucket.take(10_000) and bucket.take(10_000) and bucket.take(10_000)
    assert not bucket.take(10_000), "never more than the burst, however long it waited"


def test_failure_counter_forgets_after_a_quiet_window_and_stays_bounded() -> None:
    counter = FailureCounter(window_ms=1000, capacity=3)
    counter.fail("a", 0)
    counter.fail("a", 900)
    assert counter.count("a", 1800) == 2, "the window runs from the last failure"
    assert counter.count("a", 1901) == 0
    for key in "bcdef":
        counter.fail(key, 2000)
    assert len(counter) == 3


def test_login_delay_grows_then_caps() -> None:
    limits = Limits(login_free_failures=2, login_delay_ms=100, login_max_delay_ms=1000)
    assert [limits.login_delay(n) for n in range(8)] == [0, 0, 100, 200, 400, 800, 1000, 1000]


def test_failed_logins_lock_out_one_address_and_only_delay_the_account() -> None:
    core = CoreHarness()
    core.state.settings = replace(
        core.state.settings,
        limits=Limits(login_free_failures=1, login_max_failures=3, login_delay_ms=100),
    )
    state, now = core.state, core.now_ms
    assert admit_login(state, "alice", "10.0.0.1", now) == 0
    record_login(state, "alice", "10.0.0.1", False, now)
    assert admit_login(state, "ALICE", "10.0.0.2", now) == 100, "counted per account, any case"
    record_login(state, "alice", "10.0.0.1", False, now)
    record_login(state, "alice", "10.0.0.1", False, now)
    with pytest.raises(TooManyAttempts, match="too many failed logins") as refused:
        admit_login(state, "alice", "10.0.0.1", now)
    assert refused.value.retry_ms == Limits().login_window_ms
    assert admit_login(state, "alice", "10.0.0.4", now) == 400, "elsewhere: a delay, no lockout"
    for address in range(50):  # strangers everywhere failing alice's logins on purpose
        record_login(state, "alice", f"10.9.0.{address}", False, now)
    assert admit_login(state, "alice", "10.0.0.4", now) == Limits().login_max_delay_ms
    assert admit_login(state, "bob", "10.0.0.9", now) == 0, "other accounts are unaffected"

    for user in ("u1", "u2", "u3"):  # one address guessing across accounts
        record_login(state, user, "10.6.6.6", False, now)
    with pytest.raises(TooManyAttempts):
        admit_login(state, "someone-else", "10.6.6.6", now)
    assert admit_login(state, "alice", "10.0.0.1", now + 16 * 60_000) == 0, "window passed"


def test_the_core_records_login_failures() -> None:
    core = CoreHarness()
    conn = core.connection("c")
    for _ in range(10):
        core.call(conn, CheckedLogin("alice", None))
    with pytest.raises(TooManyAttempts):
        admit_login(core.state, "alice", conn.peer, core.now_ms)
    assert admit_login(core.state, "alice", "10.1.1.1", core.now_ms) > 0, "only delayed"


def test_registrations_are_throttled_per_address() -> None:
    core = CoreHarness()
    for _ in range(Limits().registration_burst):
        admit_registration(core.state, "10.0.0.1", core.now_ms)
    with pytest.raises(TooManyAttempts, match="registrations"):
        admit_registration(core.state, "10.0.0.1", core.now_ms)
    admit_registration(core.state, "10.0.0.2", core.now_ms)


def test_sending_faster_than_the_rate_is_refused_clearly() -> None:
    core = CoreHarness()
    alice = core.login("alice")
    core.ok(alice, Join(room="room1"))
    burst = Limits().message_burst
    replies = [core.call(alice, Send(room="room1", text="spam")) for _ in range(burst + 5)]
    refused = [r for r in replies if isinstance(r, Failure)]
    assert len(refused) == 5
    assert all(r.error.code == ErrorCode.RATE_LIMITED for r in refused)
    assert "messages per second" in refused[0].error.message
    assert core.state.rooms["room1"].seq == 1 + burst, "refused messages are not stored"
    core.now_ms += 1000
    assert not isinstance(core.call(alice, Send(room="room1", text="later")), Failure)


def test_rooms_per_session_and_sessions_per_address_are_capped() -> None:
    core = CoreHarness()
    core.state.settings = replace(
        core.state.settings, limits=Limits(rooms_per_session=2, sessions_per_address=2)
    )
    alice = core.login("alice")
    core.ok(alice, Join(room="a"))
    core.ok(alice, Join(room="b"))
    reply = core.call(alice, Join(room="c"))
    assert isinstance(reply, Failure) and reply.error.code == ErrorCode.LIMIT_REACHED
    assert core.ok(alice, Join(room="a"))["room"] == "a", "rejoining is not a new room"

    core.login("bob")
    third = core.connection("carol")
    core.ok(third, NewAccount("carol", "h"))
    reply = core.call(third, CheckedLogin("carol", "carol"))
    assert isinstance(reply, Failure) and reply.error.code == ErrorCode.LIMIT_REACHED


def test_take_all_spends_from_every_bucket_or_from_none() -> None:
    roomy, tight = TokenBucket.full(10, 5, 0), TokenBucket.full(1, 1, 0)
    assert take_all(0, roomy, tight) is None
    assert take_all(0, roomy, tight) is tight
    assert (roomy.tokens, tight.tokens) == (4, 0), "a refusal costs no bucket a token"
    assert take_all(1000, roomy, tight) is None


def limited(**limits: float) -> CoreHarness:
    return CoreHarness(limits=Limits(**limits))  # type: ignore[arg-type]


def code_and_wait(reply: object) -> tuple[str, int | None]:
    assert isinstance(reply, Failure), reply
    return reply.error.code, reply.error.retry_ms


def test_room_and_direct_messages_share_one_budget_per_account_across_sessions() -> None:
    core = limited(message_rate=1, message_burst=4)
    core.login("bob")
    phone, laptop = core.login("phone", "alice"), core.login("laptop", "alice")
    core.ok(phone, Join(room="room1"))
    core.ok(phone, DirectMessage(user="bob", text="one"))
    core.ok(laptop, DirectMessage(user="bob", text="two"))
    core.ok(phone, Send(room="room1", text="three"))
    core.ok(laptop, DirectMessage(user="bob", text="four"))
    for conn, request in ((laptop, DirectMessage(user="bob", text="five")),
                          (phone, Send(room="room1", text="six"))):  # fmt: skip
        code, wait = code_and_wait(core.call(conn, request))
        assert code == ErrorCode.RATE_LIMITED and wait is not None and 0 < wait <= 1001
    assert core.storage.count_undelivered("bob") == 3, "refused messages are not stored"
    core.now_ms += 1000
    core.ok(laptop, DirectMessage(user="bob", text="later"))


def test_joins_and_leaves_are_limited_per_account_and_rejoining_is_free() -> None:
    core = limited(membership_rate=0.5, membership_burst=3)
    phone, laptop = core.login("phone", "alice"), core.login("laptop", "alice")
    core.ok(phone, Join(room="room1"))
    core.ok(phone, Leave(room="room1"))
    core.ok(laptop, Join(room="room1"))
    core.ok(laptop, Join(room="room1"))  # already in: changes nothing, costs nothing
    code, wait = code_and_wait(core.call(phone, Join(room="room1")))
    assert code == ErrorCode.RATE_LIMITED and wait is not None and 1000 < wait <= 2001
    assert code_and_wait(core.call(laptop, Leave(room="room1")))[0] == ErrorCode.RATE_LIMITED
    assert core.state.rooms["room1"].user_sessions == {"alice": 1}, "nothing was done"
    core.now_ms += 2000
    core.ok(laptop, Leave(room="room1"))


def test_room_creation_is_limited_per_account_and_rooms_per_broker_are_capped() -> None:
    core = limited(rooms_per_hour=1, room_burst=2, max_rooms=5)
    phone, laptop, bob = (
        core.login("phone", "alice"),
        core.login("laptop", "alice"),
        core.login("bob"),
    )
    core.ok(phone, Join(room="a1"))
    core.ok(laptop, Join(room="a2"))
    code, wait = code_and_wait(core.call(phone, Join(room="a3")))
    assert code == ErrorCode.RATE_LIMITED and wait is not None and wait > 3_000_000
    assert "new rooms" in core.call(laptop, Join(room="a3")).error.message  # type: ignore[union-attr]
    core.ok(bob, Join(room="a1"))  # joining a room that exists creates nothing
    core.ok(bob, Join(room="b1"))
    core.ok(bob, Join(room="b2"))  # default, a1, a2, b1, b2: the broker is full
    code, wait = code_and_wait(core.call(bob, Join(room="b3")))
    assert code == ErrorCode.LIMIT_REACHED and wait is None
    assert "b3" not in core.state.rooms
    core.now_ms += 3_600_000
    assert code_and_wait(core.call(phone, Join(room="a3")))[0] == ErrorCode.LIMIT_REACHED


def test_rooms_come_in_pages_that_fit_in_a_frame_however_many_there_are() -> None:
    core = CoreHarness()
    alice = core.login("alice")
    names = {f"{n:04d}" + "\U0001f600" * 28 for n in range(600)}  # 32 characters, 116 bytes
    for name in names:
        core.state.add_room(find_or_create_room(core.state, name)[0])
    first = core.ok(alice, ListRooms())
    assert len(first["rooms"]) == ROOMS_PAGE and first["more"] is True  # type: ignore[arg-type]
    listed, after, pages = [], "", 0
    while True:
        page = core.ok(alice, ListRooms(after=after))
        assert len(encode_result(1, page)) <= MAX_FRAME_BYTES
        listed += [room["name"] for room in page["rooms"]]  # type: ignore[attr-defined]
        pages += 1
        if not page["more"]:
            break
        after = listed[-1]
    assert listed == sorted(names | {"default"}, key=str.casefold) and pages == 3
    assert core.ok(alice, ListRooms(after="zzz")) == {"rooms": [], "more": False}


def test_the_inbox_comes_in_pages_that_fit_in_a_frame_until_acknowledged() -> None:
    core = CoreHarness()
    alice, bob = core.login("alice"), core.login("bob")
    core.lift_message_limit(alice)
    core.ok(bob, Logout())
    for n in range(40):
        core.ok(alice, DirectMessage(user="bob", text=f"{n} " + "x" * 4000))
    back = core.login("bob-back", "bob")
    seen: list[int] = []
    after = 0
    while True:
        page = core.ok(back, Inbox(after=after))
        assert len(encode_result(1, page)) <= MAX_FRAME_BYTES
        ids = [m["id"] for m in page["messages"]]  # type: ignore[attr-defined]
        assert 0 < len(ids) < 40
        seen += ids
        if not page["more"]:
            break
        after = ids[-1]
    assert len(seen) == 40 == core.storage.count_undelivered("bob"), "all still undelivered"
    core.ok(back, DmAck(ids=seen[:20]))
    assert core.storage.count_undelivered("bob") == 20
    legacy = core.ok(back, Inbox())  # an older client, which never acknowledges
    assert core.storage.count_undelivered("bob") == 20 - len(legacy["messages"])  # type: ignore[arg-type]
