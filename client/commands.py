"""What a typed line means in a room: a message, or one of the client's commands.

The seed app's bare words (``LIST``, ``LEAVE``, ``LOGOUT``, exactly as typed)
and slash commands (``/join ROOM``, any case) are both read here, in one table;
``//text`` sends ``/text``. ``/msg USER TEXT`` (or ``/dm``) is a direct message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from zchat.protocol.limits import MAX_HISTORY_PAGE


class Action(StrEnum):
    """The commands a user can give inside a room."""

    LIST = "list"
    LEAVE = "leave"
    LOGOUT = "logout"
    JOIN = "join"
    ROOMS = "rooms"
    HELP = "help"
    QUIT = "quit"
    HISTORY = "history"


@dataclass(frozen=True, slots=True)
class Command:
    """A command; ``argument`` is the room for ``JOIN``, the count (or nothing) for
    ``HISTORY``, empty otherwise."""

    action: Action
    argument: str = ""


@dataclass(frozen=True, slots=True)
class Say:
    """A line to post to the room."""

    text: str


@dataclass(frozen=True, slots=True)
class Whisper:
    """A direct message to one user: ``/msg USER TEXT`` or ``/dm USER TEXT``."""

    user: str
    text: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """A line that looks like a command but is not one (or lacks its argument)."""

    problem: str


Line = Command | Say | Whisper | Unknown

BARE_WORDS = {"LIST": Action.LIST, "LEAVE": Action.LEAVE, "LOGOUT": Action.LOGOUT}
"""The seed app's commands: a whole line, upper case."""

NEEDS_ARGUMENT = {Action.JOIN: "ROOM"}
MAY_TAKE_ARGUMENT = {Action.HISTORY: "[N]"}
DIRECT_WORDS = ("msg", "dm")

HELP_LINE = (
    "Commands: LIST, LEAVE, LOGOUT, /join ROOM, /rooms, /history [N], /msg USER TEXT, /help, /quit"
)


def parse_line(line: str) -> Line | None:
    """Read one input line; None for a blank line (nothing to do)."""
    stripped = line.strip()
    if not stripped:
        return None
    if stripped in BARE_WORDS:
        return Command(BARE_WORDS[stripped])
    if not stripped.startswith("/"):
        return Say(line.rstrip("\r\n"))
    if stripped.startswith("//"):
        return Say(stripped[1:])
    word, _, rest = stripped[1:].partition(" ")
    if word.lower() in DIRECT_WORDS:
        user, _, text = rest.strip().partition(" ")
        if not user or not text.strip():
            return Unknown(f"usage: /{word.lower()} USER TEXT")
        return Whisper(user, text.strip())
    try:
        action = Action(word.lower())
    except ValueError:
        return Unknown(f"unknown command /{word}; type /help for the list")
    argument = rest.strip()
    if action in NEEDS_ARGUMENT and not argument:
        return Unknown(f"usage: /{action} {NEEDS_ARGUMENT[action]}")
    if action is Action.HISTORY and argument and not _is_count(argument):
        return Unknown(f"usage: /history [N], N from 1 to {MAX_HISTORY_PAGE}")
    if action not in NEEDS_ARGUMENT and action not in MAY_TAKE_ARGUMENT and argument:
        return Unknown(f"/{action} takes no argument")
    return Command(action, argument)


def _is_count(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_HISTORY_PAGE
