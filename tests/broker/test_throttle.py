"""Abuse limits in the pure core: buckets, failure counters, admission, caps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.broker.core import CoreHarness
from zchat.broker.admission import admit_login, admit_registration, record_login
from zchat.broker.handlers import CheckedLogin, NewAccount
from zchat.broker.outgoing import Failure
from zchat.broker.throttle import FailureCounter, Limits, TokenBucket
from zchat.protocol import ErrorCode, Join, Send
from zchat.protocol.errors import TooManyAttempts


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


def test_failed_logins_delay_then_refuse_per_account_and_per_address() -> None:
    core = CoreHarness()
    core.state.settings = replace(
        core.state.settings,
        limits=Limits(login_free_failures=1, login_max_failures=3, login_delay_ms=100),
    )
    state, now = core.state, core.now_ms
    assert admit_login(state, "alice", "10.0.0.1", now) == 0
    record_login(state, "alice", "10.0.0.1", False, now)
    assert admit_login(state, "ALICE", "10.0.0.2", now) == 100, "counted per account, any case"
    record_login(state, "alice", "10.0.0.2", False, now)
    record_login(state, "alice", "10.0.0.3", False, now)
    with pytest.raises(TooManyAttempts, match="too many failed logins"):
        admit_login(state, "alice", "10.0.0.4", now)
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
        admit_login(core.state, "alice", "10.1.1.1", core.now_ms)


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
