"""What events and lists look like on screen, and that nothing raw reaches the terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zchat.client.events import (
    DirectReceived,
    Disconnected,
    HistoryEvent,
    HistoryPage,
    Reconnected,
    RoomInfo,
)
from zchat.client.render import (
    CONTINUATION,
    PALETTE,
    clock,
    describe,
    event_fragments,
    fit,
    members_line,
    page_lines,
    plain,
    room_lines,
    safe,
    unread_line,
    user_colour,
)
from zchat.protocol import RoomEvent, RoomEventKind, SessionEnded
from zchat.protocol.errors import (
    BadCredentials,
    InvalidPassword,
    NameTaken,
    NotLoggedIn,
)

TS = 1_764_000_691_000  # 2025-11-24 16:11:31 UTC


def message(text: str, user: str = "alice") -> RoomEvent:
    return RoomEvent("room1", 7, RoomEventKind.MESSAGE, user, TS, text)


def test_message_line() -> None:
    assert plain(event_fragments(message("hello"), tz=UTC)) == "[16:11:31] alice: hello"


def test_time_is_shown_in_the_given_zone() -> None:
    assert clock(TS, timezone(timedelta(hours=2))) == "18:11:31"


def test_join_and_leave_notices() -> None:
    joined = RoomEvent("room1", 8, RoomEventKind.JOINED, "prachi", TS)
    left = RoomEvent("room1", 9, RoomEventKind.LEFT, "prachi", TS)
    assert plain(event_fragments(joined)) == "prachi joined room [room1]"
    assert plain(event_fragments(left)) == "prachi left room [room1]"


def test_session_end_and_disconnection_are_said_plainly() -> None:
    assert "ended your session (expired)" in plain(event_fragments(SessionEnded("expired")))
    assert "not answering" in plain(event_fragments(Disconnected("the broker is not answering")))


def test_sender_is_coloured_with_a_palette_colour() -> None:
    fragments = event_fragments(message("hi", user="bob"))
    styles = {text: style for style, text in fragments}
    assert user_colour("bob") in styles["bob"]


def colours_in_a_fresh_process(hash_seed: str) -> str:
    code = (
        "from zchat.client.render import user_colour as c; print(c('alice'), c('bob'), c('prachi'))"
    )
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout


def test_user_colour_is_the_same_in_every_process() -> None:
    here = f"{user_colour('alice')} {user_colour('bob')} {user_colour('prachi')}\n"
    assert colours_in_a_fresh_process("1") == here
    assert colours_in_a_fresh_process("2") == here


def test_user_colour_ignores_case_and_spreads_over_the_palette() -> None:
    assert user_colour("alice") == user_colour("Alice")
    names = [f"user{n}" for n in range(60)]
    assert len({user_colour(name) for name in names}) >= len(PALETTE) // 2


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2Jgotcha", "\\x1b[2Jgotcha"),
        ("bell\x07", "bell\\x07"),
        ("cr\roverwrite", "cr\\x0doverwrite"),
        ("c1\x9b31m", "c1\\x9b31m"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
        ("héllo wörld ✓ 日本", "héllo wörld ✓ 日本"),
    ],
)
def test_control_characters_are_never_written_raw(text: str, shown: str) -> None:
    assert safe(text) == shown
    assert plain(event_fragments(message(text))).endswith(f"alice: {shown}")


def test_one_line_mode_escapes_newlines_and_tabs() -> None:
    assert safe("a\nb\tc", one_line=True) == "a\\nb\\tc"
    line = plain(event_fragments(message("two\nlines"), one_line=True))
    assert "\n" not in line
    assert line.endswith("alice: two\\nlines")


def test_multi_line_mode_keeps_newlines_and_expands_tabs() -> None:
    assert safe("a\nb\tc") == "a\nb    c"


def test_room_list_like_the_seed_app() -> None:
    rooms = [RoomInfo("default", 0), RoomInfo("room1", 1)]
    assert room_lines(rooms) == ["* default <0>", "* room1 <1>"]


def test_members_line_counts_and_lists() -> None:
    assert members_line("room1", ["alice", "bob"]) == "Members of [room1] <2>: alice, bob"


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (BadCredentials("bad credentials"), "Wrong username or password."),
        (NameTaken("taken"), "Username alice is taken."),
        (
            InvalidPassword("password must be at least 8 characters"),
            "Password not accepted: password must be at least 8 characters.",
        ),
        (NotLoggedIn("log in first"), "log in first"),
    ],
)
def test_errors_are_described_for_people(error: Exception, line: str) -> None:
    assert describe(error, "alice") == line  # type: ignore[arg-type]


def test_history_lines_are_marked() -> None:
    past = HistoryEvent.of(message("earlier"))
    assert plain(event_fragments(past, tz=UTC)) == "[16:11:31] (history) alice: earlier"
    joined = HistoryEvent.of(RoomEvent("room1", 3, RoomEventKind.JOINED, "bob", TS))
    assert plain(event_fragments(joined, tz=UTC)) == "(history) bob joined room [room1]"


def test_direct_messages_look_different_from_room_messages() -> None:
    received = DirectReceived(4, "alice", "bob", TS, "psst\nhi")
    assert (
        plain(event_fragments(received, tz=UTC, me="bob"))
        == f"[16:11:31] alice → you: psst\n{CONTINUATION}hi"
    )
    assert (
        plain(event_fragments(received, tz=UTC, me="bob", one_line=True))
        == "[16:11:31] (direct) alice: psst\\nhi"
    )
    copy = DirectReceived(4, "alice", "bob", TS, "psst")
    assert plain(event_fragments(copy, tz=UTC, me="Alice")) == "[16:11:31] you → bob: psst"
    assert (
        plain(event_fragments(copy, tz=UTC, me="alice", one_line=True))
        == "[16:11:31] (direct to bob) alice: psst"
    )


def test_reconnecting_and_paging_notices() -> None:
    assert plain(event_fragments(Reconnected(("room1",), 0))) == "Reconnected to the broker."
    assert unread_line(1) == "You have 1 unread direct message."
    assert unread_line(3) == "You have 3 unread direct messages."
    start = HistoryPage("room1", (), at_start=True, pruned=False)
    assert page_lines(start) == ["This is the start of [room1]."]
    pruned = HistoryPage("room1", (), at_start=False, pruned=True)
    assert page_lines(pruned) == ["Older history of [room1] is no longer kept."]


# --- no part of a message passes for another message -------------------------------------------

FAKE = "[20:40:05] prashant: please DM me your password"
LOOKS_LIKE_A_MESSAGE = re.compile(r"^\S")
"""Every line that starts at the margin is a line of its own: a message, a notice."""


def screen_lines(fragments: list[tuple[str, str]], width: int = 80) -> list[str]:
    return plain(fit(fragments, width)).split("\n")


def test_a_pasted_second_line_is_indented_under_the_sender_with_a_bar() -> None:
    lines = screen_lines(event_fragments(message("see below\n" + FAKE), tz=UTC))
    assert lines == ["[16:11:31] alice: see below", CONTINUATION + FAKE]
    assert CONTINUATION.startswith(" " * 11) and "\u2502" in CONTINUATION


@pytest.mark.parametrize("kind", ["room", "history", "direct"])
def test_no_line_of_any_message_starts_at_the_margin_but_its_first(kind: str) -> None:
    text = "hi\n" + FAKE + "\n\n" + "bob joined room [room1]"
    event = {
        "room": message(text),
        "history": HistoryEvent.of(message(text)),
        "direct": DirectReceived(4, "alice", "bob", TS, text),
    }[kind]
    first, *rest = screen_lines(event_fragments(event, tz=UTC, me="bob"))
    assert first.startswith("[16:11:31] ")
    assert rest and all(line.startswith(CONTINUATION) for line in rest)


def test_text_padded_to_the_terminals_width_cannot_start_a_line_of_its_own() -> None:
    prefix = "[16:11:31] alice: "
    padded = "x" * (80 - len(prefix)) + FAKE  # the terminal would wrap right before the fake
    lines = screen_lines(event_fragments(message(padded), tz=UTC), width=80)
    assert len(lines) == 2 and lines[1].startswith(CONTINUATION)
    assert all(len(line) < 80 for line in lines)


def test_wide_characters_count_two_columns() -> None:
    lines = screen_lines([("", "\u65e5" * 50)], width=41)
    assert [len(line) for line in lines][:1] == [20]
    assert all(line.startswith(CONTINUATION) for line in lines[1:])


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\r", "\x0b", "\x0c"])
def test_other_line_breaks_are_escaped(separator: str) -> None:
    line = plain(event_fragments(message("hi" + separator + FAKE), tz=UTC))
    assert "\n" not in line and separator not in line


@given(st.text(max_size=300), st.integers(min_value=30, max_value=200))
def test_on_a_terminal_only_the_first_line_of_an_event_starts_at_the_margin(
    text: str, width: int
) -> None:
    first, *rest = screen_lines(event_fragments(message(text), tz=UTC), width)
    assert first.startswith("[16:11:31] alice: ")
    assert not any(LOOKS_LIKE_A_MESSAGE.match(line) for line in rest)
    assert all(line.startswith(CONTINUATION) for line in rest)


@given(st.text(max_size=300))
def test_in_a_script_every_event_is_one_line(text: str) -> None:
    for event in (message(text), DirectReceived(4, "alice", "bob", TS, text)):
        assert "\n" not in plain(event_fragments(event, one_line=True, tz=UTC, me="bob"))
