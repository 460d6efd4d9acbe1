"""How events and replies look on screen, as styled fragments or plain lines.

Everything the broker relays is made safe to print here: the broker refuses
control characters in texts, but a client never trusts that, so no escape
character received from the network reaches the terminal. Nor can any part of
a message pass for another message: on a terminal every line of a message
after its first (typed in it, or made by wrapping) starts with `CONTINUATION`,
and a script gets one line per event, its newlines escaped.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo

from prompt_toolkit.utils import get_cwidth

from zchat.protocol import RoomEvent, RoomEventKind, SessionEnded, ZchatError
from zchat.protocol.errors import (
    BadCredentials,
    InvalidName,
    InvalidPassword,
    NameTaken,
    NotMember,
)

from .events import (
    ClientEvent,
    DirectReceived,
    Disconnected,
    HistoryEvent,
    HistoryPage,
    JoinedRoom,
    Reconnected,
    RoomInfo,
)

Fragments = list[tuple[str, str]]
"""prompt_toolkit's formatted text: (style, text) pairs."""

PALETTE = (
    "ansired",
    "ansigreen",
    "ansiyellow",
    "ansiblue",
    "ansimagenta",
    "ansicyan",
    "ansibrightred",
    "ansibrightgreen",
    "ansibrightyellow",
    "ansibrightblue",
    "ansibrightmagenta",
    "ansibrightcyan",
)

NOTICE_STYLE = "italic"
ERROR_STYLE = "ansired"
HISTORY_STYLE = "ansibrightblack"
DIRECT_STYLE = "bold ansimagenta"
HISTORY_MARK = "(history) "
"""Starts every line of scrollback, so a reader (or a script) tells it from live traffic."""

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
"""Control characters, line and paragraph separators, and bidi overrides that could
make a line read backwards."""

CONTINUATION = " " * len("[00:00:00] ") + "\u2502 "
"""Starts every further line of a message on a terminal: indented past where a
message line has its time, with a bar, so no line of a text can pass for another
message (those start with ``[`` at the margin) or a notice (those start with a name)."""


def user_colour(name: str) -> str:
    """A colour for a user that is the same in every client and every run.

    crc32, not ``hash()``: Python salts string hashes per process.
    """
    return PALETTE[zlib.crc32(name.casefold().encode("utf-8")) % len(PALETTE)]


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str, *, one_line: bool = False) -> str:
    """Text with every control character shown as an escape, never sent raw.

    Tab and newline are kept unless ``one_line``, where they become ``\\t``/``\\n``
    so one event is always one line.
    """
    if one_line:
        text = text.replace("\t", "\\t").replace("\n", "\\n")
    else:
        text = text.replace("\t", "    ")
    return _UNSAFE.sub(_escape, text)


def body(text: str, *, one_line: bool = False) -> str:
    """A message's text made safe; on a terminal its lines after the first start with
    `CONTINUATION`, in a script its newlines are escaped so the event stays one line."""
    if one_line:
        return safe(text, one_line=True)
    return ("\n" + CONTINUATION).join(safe(text).split("\n"))


def fit(fragments: Fragments, width: int) -> Fragments:
    """Wrap fragments to ``width`` columns, each wrapped line starting with `CONTINUATION`.

    The terminal would wrap a long line at its margin by itself, so text padded to
    the width could start a line of its own there and look like a message; wrapping
    here, one column short of the margin, leaves the terminal nothing to wrap.
    """
    limit = width - 1
    if limit <= 2 * len(CONTINUATION):
        return fragments  # too narrow to say anything useful either way
    fitted: Fragments = []
    column = 0
    for style, text in fragments:
        piece: list[str] = []
        for char in text:
            if char == "\n":
                column = 0
            else:
                size = get_cwidth(char)
                if column + size > limit:
                    piece.append("\n" + CONTINUATION)
                    column = len(CONTINUATION)
                column += size
            piece.append(char)
        fitted.append((style, "".join(piece)))
    return fitted


def clock(ts_ms: int, tz: tzinfo | None = None) -> str:
    """``HH:MM:SS`` of a broker timestamp, in local time unless ``tz`` is given."""
    return datetime.fromtimestamp(ts_ms / 1000, tz).strftime("%H:%M:%S")


def event_fragments(
    event: ClientEvent, *, one_line: bool = False, tz: tzinfo | None = None, me: str | None = None
) -> Fragments:
    """One event as styled fragments; `plain` turns them into the line a script reads.

    ``me`` is the logged-in user, so a direct message can say "you".
    """
    if isinstance(event, RoomEvent):
        return _room_event(event, one_line, tz)
    if isinstance(event, DirectReceived):
        return direct_fragments(event, one_line=one_line, tz=tz, me=me)
    if isinstance(event, SessionEnded):
        reason = safe(event.reason, one_line=True)
        return [(ERROR_STYLE, f"The broker ended your session ({reason}). Log in again.")]
    if isinstance(event, Disconnected):
        reason = safe(event.reason, one_line=True)
        return [(ERROR_STYLE, f"Connection to the broker lost ({reason}); reconnecting…")]
    if isinstance(event, Reconnected):
        return [(NOTICE_STYLE, "Reconnected to the broker.")]
    if isinstance(event, JoinedRoom):
        return [("", f"Joined room [{safe(event.name, one_line=True)}]")]
    raise TypeError(f"not a client event: {event!r}")


def _room_event(event: RoomEvent, one_line: bool, tz: tzinfo | None) -> Fragments:
    user = safe(event.user, one_line=True)
    room = safe(event.room, one_line=True)
    past = isinstance(event, HistoryEvent)
    mark: Fragments = [(HISTORY_STYLE, HISTORY_MARK)] if past else []
    if event.kind is RoomEventKind.MESSAGE:
        return [
            ("", f"[{clock(event.ts_ms, tz)}] "),
            *mark,
            (f"bold {user_colour(event.user)}", user),
            (HISTORY_STYLE if past else "", ": " + body(event.text, one_line=one_line)),
        ]
    verb = "joined" if event.kind is RoomEventKind.JOINED else "left"
    return [
        *mark,
        (user_colour(event.user), user),
        (NOTICE_STYLE, f" {verb} room [{room}]"),
    ]


def direct_fragments(
    message: DirectReceived, *, one_line: bool = False, tz: tzinfo | None = None, me: str | None
) -> Fragments:
    """A direct message: ``alice → you: text`` on a terminal; a script's line says
    ``(direct)`` (or ``(direct to bob)`` for a copy of one's own) before the sender."""
    sender = safe(message.sender, one_line=True)
    recipient = safe(message.recipient, one_line=True)
    mine = me is not None and message.sender.casefold() == me.casefold()
    text = body(message.text, one_line=one_line)
    when = ("", f"[{clock(message.ts_ms, tz)}] ")
    if one_line:
        mark = f"(direct to {recipient}) " if mine else "(direct) "
        return [when, (DIRECT_STYLE, mark), (f"bold {user_colour(message.sender)}", sender),
                ("", ": " + text)]  # fmt: skip
    if mine:
        return [when, (DIRECT_STYLE, f"you → {recipient}"), ("", ": " + text)]
    return [
        when,
        (f"bold {user_colour(message.sender)}", sender),
        (DIRECT_STYLE, " → you"),
        ("", ": " + text),
    ]


def unread_line(count: int) -> str:
    """``You have 2 unread direct messages.``"""
    noun = "message" if count == 1 else "messages"
    return f"You have {count} unread direct {noun}."


def page_lines(page: HistoryPage) -> list[str]:
    """What to say around a page of older history: where it ends."""
    room = safe(page.room, one_line=True)
    if page.pruned:
        return [f"Older history of [{room}] is no longer kept."]
    if page.at_start:
        return [f"This is the start of [{room}]."]
    return []


def plain(fragments: Fragments) -> str:
    """The text of fragments without any styling."""
    return "".join(text for _, text in fragments)


def room_lines(rooms: Iterable[RoomInfo]) -> list[str]:
    """The room list as the seed app showed it: ``* room1 <2>``."""
    return [f"* {safe(room.name, one_line=True)} <{room.members}>" for room in rooms]


def members_line(room: str, members: Sequence[str]) -> str:
    """``Members of [room1] <2>: alice, bob``."""
    names = ", ".join(safe(name, one_line=True) for name in members)
    return f"Members of [{safe(room, one_line=True)}] <{len(members)}>: {names}"


def describe(error: ZchatError, user: str = "") -> str:
    """One line telling a person what went wrong, for the errors they can fix."""
    name = safe(user, one_line=True)
    if isinstance(error, BadCredentials):
        return "Wrong username or password."
    if isinstance(error, NameTaken):
        return f"Username {name} is taken."
    if isinstance(error, InvalidPassword):
        return f"Password not accepted: {safe(error.message, one_line=True)}."
    if isinstance(error, InvalidName):
        return f"Invalid name: {safe(error.message, one_line=True)}."
    if isinstance(error, NotMember):
        return "You are not in that room."
    return safe(error.message, one_line=True)
