"""Script mode: stdin lines in, one plain line per event out, for bots and tests.

Stdin is read on a thread so events keep printing while the script is quiet;
end of input logs out and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import click

from zchat.protocol import SessionEnded, ZchatError

from .commands import HELP_LINE, Action, Command, Say, Unknown, Whisper, parse_line
from .errors import ClientClosed
from .events import DirectReceived
from .render import (
    describe,
    direct_fragments,
    event_fragments,
    members_line,
    page_lines,
    plain,
    room_lines,
    unread_line,
)
from .session import DEFAULT_HISTORY, ChatClient


@dataclass(frozen=True, slots=True)
class ScriptOptions:
    user: str
    password: str
    register: bool
    room: str
    history: int = DEFAULT_HISTORY


def read_lines(fd: int, deliver: Callable[[str | None], None]) -> threading.Thread:
    """Call ``deliver`` with each line read from ``fd`` on a thread, then None at EOF.

    A thread, because `loop.connect_read_pipe` cannot read a regular file; and
    ``os.read`` rather than ``sys.stdin``, so a thread still blocked in it at exit
    holds no lock the interpreter needs to shut down.
    """

    def run() -> None:
        pending = b""
        while chunk := os.read(fd, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                deliver(line.decode("utf-8", "replace").rstrip("\r"))
        if pending:
            deliver(pending.decode("utf-8", "replace").rstrip("\r"))
        deliver(None)

    thread = threading.Thread(target=run, name="zchat-stdin", daemon=True)
    thread.start()
    return thread


def say(line: str) -> None:
    click.echo(line)


def warn(line: str) -> None:
    click.echo(line, err=True)


async def run_script(options: ScriptOptions, connect: Callable[[], Awaitable[ChatClient]]) -> int:
    """Connect, log in, join one room, relay stdin to it and print its events; the exit code."""
    client = await connect()
    try:
        if options.register:
            say(f"Registered {await client.register(options.user, options.password)}.")
        say(f"Logged in as {await client.login(options.user, options.password)}.")
        if client.unread:
            say(unread_line(client.unread))
            for message in await client.inbox():
                say(plain(direct_fragments(message, one_line=True, me=client.user)))
        return await ScriptSession(client, options.history).run(options.room)
    finally:
        if client.user is not None:  # failed half-way: do not leave the session to the lease
            with contextlib.suppress(ZchatError):
                await client.logout()
        await client.aclose()


class ScriptSession:
    """One logged-in script run: the current room, stdin, and the event printer."""

    def __init__(self, client: ChatClient, history: int = DEFAULT_HISTORY) -> None:
        self.client = client
        self.history = history
        self.room: str | None = None
        self.ended = asyncio.Event()
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()

    async def run(self, room: str) -> int:
        await self.join(room)
        printer = asyncio.create_task(self.print_events(), name="zchat-script-printer")
        loop = asyncio.get_running_loop()
        read_lines(sys.stdin.fileno(), lambda line: _put_threadsafe(loop, self.lines, line))
        try:
            while (line := await self.next_line()) is not None:
                if not await self.handle(line):
                    return 0
            if self.ended.is_set():
                return 1
            await self.client.logout()
            return 0
        finally:
            printer.cancel()

    async def next_line(self) -> str | None:
        """The next stdin line, or None at EOF or when the broker ended the session."""
        getter = asyncio.ensure_future(self.lines.get())
        ended = asyncio.ensure_future(self.ended.wait())
        await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        if self.ended.is_set():
            getter.cancel()
            return None
        return getter.result()

    async def print_events(self) -> None:
        async for event in self.client.events():
            say(plain(event_fragments(event, one_line=True, me=self.client.user)))
            if isinstance(event, SessionEnded):
                self.ended.set()

    async def join(self, room: str) -> None:
        joined = await self.client.join(room, self.history)
        self.room = joined.name

    async def handle(self, line: str) -> bool:
        """Carry out one line; False when the script should stop."""
        parsed = parse_line(line)
        try:
            if isinstance(parsed, Say):
                if self.room is None:
                    warn("error: not in a room; use /join ROOM")
                else:
                    await self.client.send(self.room, parsed.text)
            elif isinstance(parsed, Whisper):
                sent = await self.client.dm(parsed.user, parsed.text)
                me = self.client.user or ""
                echo = DirectReceived(sent.id, me, sent.user, sent.ts_ms, parsed.text)
                say(plain(direct_fragments(echo, one_line=True, me=me)))
            elif isinstance(parsed, Unknown):
                warn(f"error: {parsed.problem}")
            elif isinstance(parsed, Command):
                return await self.command(parsed)
        except ClientClosed:
            raise
        except ZchatError as exc:
            warn(f"error: {describe(exc)}")
        return True

    async def command(self, command: Command) -> bool:
        action = command.action
        if action in (Action.LOGOUT, Action.QUIT):
            await self.client.logout()
            say("Logged out.")
            return False
        if action is Action.HELP:
            say(HELP_LINE)
        elif action is Action.ROOMS:
            for line in room_lines(await self.client.rooms()):
                say(line)
        elif action is Action.JOIN:
            if self.room is not None:
                await self.client.leave(self.room)
                self.room = None
            await self.join(command.argument)
        elif self.room is None:
            warn("error: not in a room; use /join ROOM")
        elif action is Action.LIST:
            say(members_line(self.room, await self.client.members(self.room)))
        elif action is Action.HISTORY:
            count = int(command.argument) if command.argument else self.history
            page = await self.client.earlier(self.room, count)
            for event in page.events:
                say(plain(event_fragments(event, one_line=True)))
            for line in page_lines(page):
                say(line)
        elif action is Action.LEAVE:
            await self.client.leave(self.room)
            say(f"Left room [{self.room}]")
            self.room = None
        return True


def _put_threadsafe(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None], line: str | None
) -> None:
    """Hand a line to the loop; a loop that already closed means nobody is listening."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(queue.put_nowait, line)
