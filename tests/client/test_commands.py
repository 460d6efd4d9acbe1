"""Reading what a user types in a room: messages, the seed's words, slash commands."""

from __future__ import annotations

import pytest

from zchat.client.commands import Action, Command, Say, Unknown, Whisper, parse_line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("LIST", Command(Action.LIST)),
        ("  LEAVE ", Command(Action.LEAVE)),
        ("LOGOUT", Command(Action.LOGOUT)),
        ("/list", Command(Action.LIST)),
        ("/LEAVE", Command(Action.LEAVE)),
        ("/logout", Command(Action.LOGOUT)),
        ("/join room2", Command(Action.JOIN, "room2")),
        ("/join   room2  ", Command(Action.JOIN, "room2")),
        ("/rooms", Command(Action.ROOMS)),
        ("/help", Command(Action.HELP)),
        ("/quit", Command(Action.QUIT)),
        ("/history", Command(Action.HISTORY)),
        ("/history 20", Command(Action.HISTORY, "20")),
        ("/msg bob hi there", Whisper("bob", "hi there")),
        ("/DM  bob   spaced  out ", Whisper("bob", "spaced  out")),
    ],
)
def test_commands_are_recognised(line: str, expected: Command | Whisper) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize("line", ["list", "List", "LIST please", "hello LOGOUT"])
def test_bare_words_are_commands_only_alone_and_in_capitals(line: str) -> None:
    assert parse_line(line) == Say(line)


def test_a_message_keeps_its_inner_spacing() -> None:
    assert parse_line("  indented  text  ") == Say("  indented  text  ")


def test_double_slash_sends_a_literal_slash() -> None:
    assert parse_line("//join is a command") == Say("/join is a command")


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_blank_lines_do_nothing(line: str) -> None:
    assert parse_line(line) is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("/frobnicate", "unknown command /frobnicate"),
        ("/join", "usage: /join ROOM"),
        ("/list everyone", "/list takes no argument"),
        ("/history -3", "usage: /history [N], N from 1 to 500"),
        ("/history 0", "usage: /history [N]"),
        ("/history 501", "usage: /history [N]"),
        ("/history lots", "usage: /history [N]"),
        ("/msg", "usage: /msg USER TEXT"),
        ("/msg bob", "usage: /msg USER TEXT"),
        ("/dm bob   ", "usage: /dm USER TEXT"),
    ],
)
def test_bad_commands_explain_themselves(line: str, problem: str) -> None:
    parsed = parse_line(line)
    assert isinstance(parsed, Unknown)
    assert problem in parsed.problem
