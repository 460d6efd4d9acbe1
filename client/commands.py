"""What a typed line means in a room: a message, or one of the client's commands.

The seed app's bare words (``LIST``, ``LEAVE``, ``LOGOUT``, exactly as typed)
and slash commands (``/join ROOM``, any case) are both read here, in one table;
``//text`` sends ``/text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """The commands a user can give inside a room."""

    LIST = "list"
    LEAVE = "leave"
    LOGOUT = "logout"
    JOIN = "join"
    ROOMS = "rooms"
    HELP = "help"
    QUIT = "quit"


@dataclass(frozen=True, slots=True)
class Command:
    """A command; ``argument`` is the room for ``JOIN``, empty otherwise."""

    action: Action
    argument: str = ""


@dataclass(frozen=True, slots=True)
class Say:
    """A line to post to the room."""

    text: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """A line that looks like a command but is not one (or lacks its argument)."""

    problem: str


Line = Command | Say | Unknown

BARE_WORDS = {"LIST": Action.LIST, "LEAVE": Action.LEAVE, "LOGOUT": Action.LOGOUT}
"""The seed app's commands: a whole line, upper case."""

NEEDS_ARGUMENT = {Action.JOIN: "ROOM"}

HELP_LINE = "Commands: LIST, LEAVE, LOGOUT, /join ROOM, /rooms, /help, /quit"


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
    try:
        action = Action(word.lower())
    except ValueError:
        return Unknown(f"unknown command /{word}; type /help for the list")
    argument = rest.strip()
    if action in NEEDS_ARGUMENT and not argument:
        return Unknown(f"usage: /{action} {NEEDS_ARGUMENT[action]}")
    if action not in NEEDS_ARGUMENT and argument:
        return Unknown(f"/{action} takes no argument")
    return Command(action, argument)
