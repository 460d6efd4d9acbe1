"""Sessions belong to a CURVE key, not to a routing id; resume tokens are single-use.

The core sees each connection as (routing id, key): any peer may claim a routing id
once its owner is gone, but none can present another's key.
"""

from __future__ import annotations

from tests.broker.core import CoreHarness, error_code, publications
from zchat.broker.handlers import CheckedLogin
from zchat.broker.outgoing import Failure, Outgoing, Result, Unicast
from zchat.broker.state import Connection
from zchat.protocol import (
    Direct,
    DirectMessage,
    ErrorCode,
    History,
    Inbox,
    Join,
    Leave,
    ListRooms,
    Logout,
    Members,
    Ping,
    Request,
    Resume,
    RoomKey,
    Send,
    SessionEnded,
)


def to(connection: Connection, outgoing: list[Outgoing]) -> list[object]:
    """What ``outgoing`` sends to ``connection``'s routing id."""
    return [
        i.message
        for i in outgoing
        if isinstance(i, Unicast) and i.routing_id == connection.routing_id
    ]


def token_of(result: dict[str, object]) -> str:
    token = result["resume"]
    assert isinstance(token, str)
    return token


def log_in(core: CoreHarness, connection: Connection, user: str = "alice") -> str:
    """Log ``connection`` in as ``user``; returns the resume token."""
    return token_of(core.ok(connection, CheckedLogin(user, user)))


SESSION_REQUESTS: list[Request] = [
    Join(room="room1", history=50),
    Send(room="room1", text="it is me, alice", msg_id="m-1"),
    Members(room="room1"),
    History(room="room1", from_seq=1, to_seq=100),
    DirectMessage(user="bob", text="as alice"),
    Inbox(),
    ListRooms(),
    Leave(room="room1"),
    Ping(),
    Logout(),
]


def test_a_claimed_routing_id_with_another_key_learns_nothing_and_acts_for_nobody(
    core: CoreHarness,
) -> None:
    alice = core.login("alice")
    bob = core.login("bob")
    core.ok(alice, Join(room="room1"))
    core.ok(bob, Join(room="room1"))
    core.ok(alice, Send(room="room1", text="secret plans"))
    seq_before = core.state.rooms["room1"].seq
    mallory = core.connection("alice", key="mallory's own key")

    for request in SESSION_REQUESTS:
        out = core.send(mallory, request)
        assert error_code(out[0].message) == ErrorCode.NOT_LOGGED_IN, request  # type: ignore[arg-type]
        assert [m for m in to(mallory, out) if not isinstance(m, Failure)] == [], request

    # Alice's session ended when her routing id came back with another key: the room saw
    # her leave (one event), and nothing was said in her name.
    room = core.state.rooms["room1"]
    assert room.seq == seq_before + 1
    assert list(room.user_sessions) == ["bob"]
    assert core.storage.undelivered("bob", 10) == []

    # What happens next never reaches her old routing id: a direct message waits for her,
    # and the key that changes when bob leaves goes to nobody there.
    out = core.send(bob, DirectMessage(user="alice", text="for alice only"))
    assert not any(isinstance(m, Direct) for m in to(mallory, out))
    assert [m.text for m in core.storage.undelivered("alice", 10)] == ["for alice only"]
    out = core.send(bob, Leave(room="room1"))
    assert not any(isinstance(m, RoomKey) for m in to(mallory, out))


def test_the_session_a_claim_ended_is_resumed_by_its_token(core: CoreHarness) -> None:
    token = log_in(core, core.connection("alice"))
    core.call(core.connection("alice", key="another key"), Ping())
    back = core.connection("alice-again")
    assert core.ok(back, Resume(token=token))["user"] == "alice"
    assert core.ok(back, Join(room="room1"))["members"] == ["alice"]


def test_only_the_key_that_held_an_expired_session_hears_that_it_expired(
    core: CoreHarness,
) -> None:
    alice = core.login("alice")
    core.now_ms += 60_000
    core.expire()
    stranger = core.connection("alice", key="a stranger's key")
    assert error_code(core.call(stranger, Join(room="room1"))) == ErrorCode.NOT_LOGGED_IN
    assert error_code(core.call(alice, Join(room="room1"))) == ErrorCode.SESSION_EXPIRED


def test_resume_answers_a_new_token_and_spends_the_old_one(core: CoreHarness) -> None:
    old = log_in(core, core.connection("laptop"))
    resumed = core.ok(core.connection("laptop-2"), Resume(token=old))
    new = token_of(resumed)
    assert new != old
    assert error_code(core.call(core.connection("laptop-3"), Resume(token=old))) == (
        ErrorCode.BAD_RESUME_TOKEN
    )
    assert core.ok(core.connection("laptop-4"), Resume(token=new))["user"] == "alice"


def test_a_resume_takes_the_live_session_over_so_a_login_is_one_session(
    core: CoreHarness,
) -> None:
    bob = core.login("bob")
    core.ok(bob, Join(room="room1"))
    owner = core.connection("owner")
    token = log_in(core, owner)
    core.ok(owner, Join(room="room1"))
    session_id = core.state.sessions[owner.routing_id].session_id
    seq = core.state.rooms["room1"].seq

    elsewhere = core.connection("elsewhere", peer="192.0.2.7")
    out = core.send(elsewhere, Resume(token=token))
    assert isinstance(out[0].message, Result)
    assert SessionEnded(reason="replaced") in to(owner, out)
    assert publications(out) == []  # the room sees no one leave or join
    assert core.state.rooms["room1"].seq == seq

    # The session moved, rooms and all: one alice, on the new connection only.
    assert [s.session_id for s in core.state.sessions_by_user["alice"].values()] == [session_id]
    assert core.ok(elsewhere, Send(room="room1", text="still here"))["seq"] == seq + 1
    assert error_code(core.call(owner, Ping())) == ErrorCode.NOT_LOGGED_IN
    assert core.state.sessions_per_peer == {"127.0.0.1": 1, "192.0.2.7": 1}

    # Replaying the token again makes no second session.
    again = core.connection("replay")
    assert error_code(core.call(again, Resume(token=token))) == ErrorCode.BAD_RESUME_TOKEN
    assert len(core.state.sessions_by_user["alice"]) == 1


def test_bad_tokens_are_throttled_per_address(core: CoreHarness) -> None:
    owner = core.connection("owner", peer="198.51.100.1")
    token = log_in(core, owner)
    guesser = core.connection("guesser", peer="203.0.113.9")
    limit = core.state.settings.limits.login_max_failures
    for n in range(limit):
        assert error_code(core.call(guesser, Resume(token=f"{n:064x}"))) == (
            ErrorCode.BAD_RESUME_TOKEN
        )
    assert error_code(core.call(guesser, Resume(token=token))) == ErrorCode.TOO_MANY_ATTEMPTS
    # The throttle is the guesser's address's, not the owner's.
    assert core.ok(core.connection("owner-2", peer="198.51.100.1"), Resume(token=token))


def test_logout_revokes_that_sessions_token_only(core: CoreHarness) -> None:
    phone, laptop = core.connection("phone"), core.connection("laptop")
    phone_token, laptop_token = log_in(core, phone), log_in(core, laptop)
    core.ok(phone, Logout())
    assert error_code(core.call(core.connection("p2"), Resume(token=phone_token))) == (
        ErrorCode.BAD_RESUME_TOKEN
    )
    assert core.ok(core.connection("l2"), Resume(token=laptop_token))["user"] == "alice"
