"""Interactive mode: the seed app's flow (register or log in, pick a room, chat).

Input is read with prompt_toolkit inside ``patch_stdout``, and events are
printed from a background task above the line being typed, so nothing a
room says ever garbles what the user is typing.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from prompt_toolkit import PromptSession, print_formatted_text
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import DummyHistory
from prompt_toolkit.layout.processors import Processor, Transformation, TransformationInput
from prompt_toolkit.patch_stdout import patch_stdout

from zchat.protocol import SessionEnded, ZchatError

from .commands import HELP_LINE, Action, Command, Say, Unknown, Whisper, parse_line
from .errors import ClientClosed
from .events import DirectReceived, JoinedRoom
from .render import (
    ERROR_STYLE,
    Fragments,
    describe,
    direct_fragments,
    event_fragments,
    fit,
    members_line,
    page_lines,
    room_lines,
    safe,
    unread_line,
)
from .session import DEFAULT_HISTORY, ChatClient

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class InteractiveOptions:
    user: str | None
    password: str | None
    register: bool
    room: str | None
    colour: bool
    history: int = DEFAULT_HISTORY
    """Events of scrollback shown on joining a room, and per ``/history``."""


class SessionOver(Exception):
    """The broker ended the session while the user was at a prompt."""


class UserQuit(Exception):
    """Ctrl-C or Ctrl-D at a prompt: log out and exit.

    prompt_toolkit raises `KeyboardInterrupt`, which asyncio re-raises out of the
    event loop when it escapes a task; as an ordinary exception it unwinds normally.
    """


async def _prompt(session: PromptSession[str], message: str) -> str:
    try:
        return await session.prompt_async(message)
    except (KeyboardInterrupt, EOFError) as exc:
        raise UserQuit from exc


class HiddenInput(Processor):
    """Shows nothing of what is typed, not even one asterisk per character."""

    def apply_transformation(self, transformation_input: TransformationInput) -> Transformation:
        return Transformation([], source_to_display=lambda _: 0, display_to_source=lambda _: 0)


class Screen:
    """Where the user reads: styled when colours are on, plain text otherwise."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def show(self, fragments: Fragments) -> None:
        """An event, wrapped here (see `fit`) so that no line of it starts at the margin
        but its first."""
        self._print(fit(fragments, shutil.get_terminal_size().columns))

    def _print(self, fragments: Fragments) -> None:
        if self.colour:
            print_formatted_text(FormattedText(fragments))
        else:
            print("".join(text for _, text in fragments), flush=True)

    def say(self, text: str, style: str = "") -> None:
        """A line of the client's own (a notice, a prompt's answer), as it is."""
        self._print([(style, text)])

    def error(self, text: str) -> None:
        self.say(text, ERROR_STYLE)


async def confirm(question: str) -> bool:
    """Ask a yes/no question; only "y" or "yes" is yes (Ctrl-C and Ctrl-D are no)."""
    session: PromptSession[str] = PromptSession(history=DummyHistory())
    try:
        answer = await _prompt(session, question)
    except UserQuit:
        return False
    return answer.strip().lower() in ("y", "yes")


async def run_interactive(
    options: InteractiveOptions, connect: Callable[[], Awaitable[ChatClient]]
) -> int:
    """Connect, then run the conversation until the user quits; the exit code."""
    client = await connect()
    app = Interactive(client, Screen(options.colour), options)
    try:
        with patch_stdout():
            await app.run()
    except UserQuit:
        pass
    finally:
        await app.close()
    return 0


class Interactive:
    """The conversation with one person: menus, prompts, and the event printer."""

    def __init__(self, client: ChatClient, screen: Screen, options: InteractiveOptions) -> None:
        self.client = client
        self.screen = screen
        self.options = options
        self.input: PromptSession[str] = PromptSession()
        self.lines: PromptSession[str] = PromptSession(erase_when_done=True)
        """Room input: a sent line is erased, since it comes back from the room."""
        self.secret: PromptSession[str] = PromptSession(
            history=DummyHistory(), input_processors=[HiddenInput()]
        )
        self.session_over = asyncio.Event()
        self.printer: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self.printer = asyncio.create_task(self.print_events(), name="zchat-printer")
        while True:
            await self.authenticate()
            try:
                if await self.lobby() is Action.QUIT:
                    return
            except SessionOver:
                continue

    async def close(self) -> None:
        """Log out if still logged in, stop printing, close the client."""
        if self.client.user is not None:
            with contextlib.suppress(ZchatError):
                await self.client.logout()
        if self.printer is not None:
            self.printer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.printer
        await self.client.aclose()

    async def print_events(self) -> None:
        async for event in self.client.events():
            if isinstance(event, JoinedRoom):
                self.screen.say(f"Joined room [{safe(event.name, one_line=True)}]. {HELP_LINE}")
                continue
            self.screen.show(event_fragments(event, me=self.client.user))
            if isinstance(event, SessionEnded):
                self.session_over.set()

    async def ask(self, message: str, *, secret: bool = False, erase: bool = False) -> str:
        """Prompt for a line; raises `SessionOver` if the broker ends the session first."""
        session = self.secret if secret else self.lines if erase else self.input
        return await self.unless_over(_prompt(session, message))

    async def unless_over(self, work: Awaitable[T]) -> T:
        """Await ``work`` unless the session ends first (then cancel it)."""
        task = asyncio.ensure_future(work)
        over = asyncio.ensure_future(self.session_over.wait())
        try:
            await asyncio.wait({task, over}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            over.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not task.done() or task.cancelled():
            raise SessionOver
        return task.result()

    # --- logging in -------------------------------------------------------------------------

    async def authenticate(self) -> str:
        """Register and/or log in until it works; returns the user name.

        Command-line choices (user, password, --register) are used for the first
        attempt only; after a failure or a logout the user is asked.
        """
        self.session_over.clear()
        user, password, register = self.options.user, self.options.password, self.options.register
        self.options = replace(self.options, user=None, password=None, register=False)
        while True:
            if password is not None:
                choice = "1" if register else "2"
            else:
                self.screen.say("Press 1 to register")
                self.screen.say("Press 2 to login")
                choice = (await self.ask("Your choice: ")).strip()
                if choice not in ("1", "2"):
                    self.screen.error("Please press 1 or 2.")
                    continue
            user = user or (await self.ask("Username: ")).strip()
            password = password or await self.ask("Password: ", secret=True)
            try:
                if choice == "1":
                    await self.client.register(user, password)
                    self.screen.say("Registered successfully.")
                name = await self.client.login(user, password)
            except ClientClosed:
                raise
            except ZchatError as exc:
                self.screen.error(describe(exc, user))
                user = password = None
                continue
            self.screen.say(f"Logged in as {safe(name, one_line=True)}.")
            await self.show_unread()
            return name

    async def show_unread(self) -> None:
        """Say how many direct messages waited, and show them."""
        if not self.client.unread:
            return
        self.screen.say(unread_line(self.client.unread))
        try:
            messages = await self.client.inbox()
        except ClientClosed:
            raise
        except ZchatError as exc:
            self.screen.error(describe(exc))
            return
        for message in messages:
            self.screen.show(direct_fragments(message, me=self.client.user))

    # --- rooms --------------------------------------------------------------------------------

    async def lobby(self) -> Action:
        """Pick rooms and chat until LOGOUT or /quit (returned)."""
        room = self.options.room
        self.options = replace(self.options, room=None)
        while True:
            if room is None:
                room = await self.choose_room()
            try:
                joined = await self.client.join(room, self.options.history)
            except ClientClosed:
                raise
            except ZchatError as exc:
                self.screen.error(describe(exc))
                room = None
                continue
            outcome = await self.chat(joined.name)
            if outcome.action in (Action.LOGOUT, Action.QUIT):
                return outcome.action
            room = outcome.argument or None

    async def choose_room(self) -> str:
        while True:
            for line in room_lines(await self.unless_over(self.client.rooms())):
                self.screen.say(line)
            room = (await self.ask("Join a Chat Room or Create New: ")).strip()
            if room:
                return room

    async def chat(self, room: str) -> Command:
        """Read lines in a room until a command takes the user out of it."""
        shown = safe(room, one_line=True)
        while True:
            parsed = parse_line(await self.ask(f"[{shown}] > ", erase=True))
            try:
                if isinstance(parsed, Say):
                    await self.client.send(room, parsed.text)
                elif isinstance(parsed, Whisper):
                    await self.whisper(parsed)
                elif isinstance(parsed, Unknown):
                    self.screen.error(parsed.problem)
                elif isinstance(parsed, Command) and await self.command(room, parsed):
                    return parsed
            except ClientClosed:
                raise
            except ZchatError as exc:
                if self.session_over.is_set():
                    raise SessionOver from exc
                self.screen.error(describe(exc))

    async def whisper(self, whisper: Whisper) -> None:
        """Send a direct message and show it as sent (the broker echoes it only to one's
        other sessions)."""
        sent = await self.client.dm(whisper.user, whisper.text)
        me = self.client.user or ""
        echo = DirectReceived(sent.id, me, sent.user, sent.ts_ms, whisper.text)
        self.screen.show(direct_fragments(echo, me=me))

    async def page_back(self, room: str, argument: str) -> None:
        """``/history [N]``: the N events before the earliest shown."""
        page = await self.client.earlier(room, int(argument) if argument else self.options.history)
        for event in page.events:
            self.screen.show(event_fragments(event))
        for line in page_lines(page):
            self.screen.say(line)

    async def command(self, room: str, command: Command) -> bool:
        """Carry out a command; True when it leaves the room (or the app)."""
        action = command.action
        shown = safe(room, one_line=True)
        if action is Action.LIST:
            self.screen.say(members_line(room, await self.client.members(room)))
        elif action is Action.ROOMS:
            for line in room_lines(await self.client.rooms()):
                self.screen.say(line)
        elif action is Action.HELP:
            self.screen.say(HELP_LINE)
        elif action is Action.HISTORY:
            await self.page_back(room, command.argument)
        elif action in (Action.LEAVE, Action.JOIN):
            await self.client.leave(room)
            self.screen.say(f"You left room [{shown}].")
            return True
        elif action is Action.LOGOUT:
            await self.client.logout()
            self.screen.say("Logged out.")
            return True
        elif action is Action.QUIT:
            return True
        return False
