"""`zchat-client`: chat from a terminal, or from a script through stdin and stdout.

Interactive when stdin is a terminal; otherwise script mode, where each stdin
line is a message or command and each event is printed as one plain line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from zchat.protocol import ZchatError
from zchat.protocol.limits import DEFAULT_ROOM

from .interactive import InteractiveOptions, run_interactive
from .render import safe
from .script import ScriptOptions, run_script
from .session import CONNECT_TIMEOUT

PASSWORD_ENV = "ZCHAT_PASSWORD"  # noqa: S105 -- the name of a variable, not a password


def read_password(password_file: Path | None) -> str | None:
    """The password from --password-file (first line) or $ZCHAT_PASSWORD, if either is set."""
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.UsageError(f"cannot read the password file: {exc}") from exc
        if not lines or not lines[0]:
            raise click.UsageError("the password file is empty")
        return lines[0]
    return os.environ.get(PASSWORD_ENV) or None


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at the time of writing.

    Interactive mode swaps it for prompt_toolkit's proxy, which prints above the
    prompt; a handler holding the original stream would garble the input line.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def wants_colour() -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--user", metavar="NAME", help="User name (asked for if missing, interactively).")
@click.option("--host", default="localhost", show_default=True, help="The broker's host.")
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="The broker's request port.",
)
@click.option("--register", is_flag=True, help="Create the account first, then log in.")
@click.option(
    "--room",
    metavar="ROOM",
    help=f"Join this room (created if new) at once. Script mode default: {DEFAULT_ROOM}.",
)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Read the password from this file's first line (else ${PASSWORD_ENV}).",
)
@click.option(
    "--connect-timeout",
    default=CONNECT_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds to wait for the broker to answer.",
)
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def main(
    user: str | None,
    host: str,
    port: int,
    register: bool,
    room: str | None,
    password_file: Path | None,
    connect_timeout: float,
    log_level: str,
) -> None:
    """Chat in zchat rooms.

    With a terminal on stdin this asks you to register or log in, lists the
    rooms and lets you chat (type /help in a room). Otherwise it runs as a
    script: it needs --user and a password (--password-file or $ZCHAT_PASSWORD),
    joins --room (default "default"), sends each stdin line as a message
    (commands such as LIST or /join ROOM work too) and prints each event as one
    line; end of input logs out.
    """
    logging.basicConfig(
        level=log_level.upper(),
        format="%(levelname)s %(name)s: %(message)s",
        stream=_CurrentStderr(),
    )
    password = read_password(password_file)
    if sys.stdin.isatty():
        options = InteractiveOptions(
            host, port, user, password, register, room, connect_timeout, wants_colour()
        )
        code = _run(run_interactive(options))
    else:
        if user is None:
            raise click.UsageError("script mode needs --user")
        if password is None:
            raise click.UsageError(f"script mode needs --password-file or ${PASSWORD_ENV}")
        script = ScriptOptions(
            host, port, user, password, register, room or DEFAULT_ROOM, connect_timeout
        )
        code = _run(run_script(script))
    sys.exit(code)


def _run(work: Coroutine[Any, Any, int]) -> int:
    """Run a mode to completion, turning a zchat error into one line and exit code 1."""
    try:
        return asyncio.run(work)
    except ZchatError as exc:
        click.echo(f"zchat-client: {safe(exc.message, one_line=True)}", err=True)
        return 1
    except KeyboardInterrupt:
        return 0
