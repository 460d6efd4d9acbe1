"""`zchat-client`: chat from a terminal, or from a script through stdin and stdout.

Interactive when stdin is a terminal; otherwise script mode, where each stdin
line is a message or command and each event is printed as one plain line.
Notes about the broker's key, and errors, go to stderr in both modes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import click

from zchat.protocol import ZchatError
from zchat.protocol.fingerprint import is_z85_key
from zchat.protocol.limits import DEFAULT_ROOM, KEY_PORT_OFFSET, MAX_HISTORY_PAGE

from .interactive import InteractiveOptions, confirm, run_interactive
from .render import safe
from .script import ScriptOptions, run_script
from .session import CONNECT_TIMEOUT, DEFAULT_HISTORY
from .trust import (
    BrokerKeyChanged,
    TrustOptions,
    connect_trusted,
    default_known_brokers,
)

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


def check_server_key(
    _context: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    """``--server-key`` is 40 characters of Z85 (surrounding spaces forgiven)."""
    if value is None:
        return None
    key = value.strip()
    if not is_z85_key(key):
        raise click.BadParameter("a broker key is 40 characters of Z85, as zchat-broker prints it")
    return key


def trust_options(
    port: int,
    key_port: int | None,
    known_brokers: Path | None,
    server_key: str | None,
    trust_new_broker: bool,
) -> TrustOptions:
    """The key options with their defaults filled in: key port = --port + 2."""
    if key_port is None:
        key_port = port + KEY_PORT_OFFSET
        if key_port > 65535:
            raise click.UsageError(f"--port {port} leaves no default key port; pass --key-port")
    return TrustOptions(
        key_port,
        known_brokers if known_brokers is not None else default_known_brokers(),
        server_key,
        trust_new_broker,
    )


def tell(line: str) -> None:
    """A note for the user, on stderr: in script mode stdout carries only events."""
    click.echo(safe(line, one_line=True), err=True)


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
    "--history",
    "history",
    default=DEFAULT_HISTORY,
    show_default=True,
    type=click.IntRange(0, MAX_HISTORY_PAGE),
    help="Events of a room's recent history shown on joining it (and per /history).",
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
    "--server-key",
    metavar="KEY",
    callback=check_server_key,
    help="The broker's public key (40 characters, as `zchat-broker --show-key` prints it). "
    "Nothing is taken on trust, and the key is remembered for this host:port.",
)
@click.option(
    "--trust-new-broker",
    is_flag=True,
    help="Trust and remember the key of a broker met for the first time without asking "
    "(needed in script mode for a broker not on this machine, unless --server-key is given).",
)
@click.option(
    "--key-port",
    type=click.IntRange(1, 65535),
    help=f"The broker's key service port. [default: --port + {KEY_PORT_OFFSET}]",
)
@click.option(
    "--known-brokers",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file of remembered broker keys. "
    "[default: zchat/known_brokers in your config directory]",
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
    history: int,
    password_file: Path | None,
    connect_timeout: float,
    server_key: str | None,
    trust_new_broker: bool,
    key_port: int | None,
    known_brokers: Path | None,
    log_level: str,
) -> None:
    """Chat in zchat rooms.

    With a terminal on stdin this asks you to register or log in, lists the
    rooms and lets you chat (type /help in a room). Otherwise it runs as a
    script: it needs --user and a password (--password-file or $ZCHAT_PASSWORD),
    joins --room (default "default"), sends each stdin line as a message
    (commands such as LIST, /join ROOM, /history or /msg USER TEXT work too) and
    prints each event as one line, scrollback marked "(history)" and direct
    messages "(direct)"; end of input logs out.

    If the connection to the broker breaks, the client says so, reconnects and
    resumes the session on its own (no password needed), then shows what was
    missed, so nothing is lost or shown twice.

    The broker is known by its key, remembered per host:port like SSH's
    known_hosts. On first contact the client fetches the key and shows its
    fingerprint: check it against the one zchat-broker prints (or
    `zchat-broker --show-key`), since someone between you and the broker could
    offer their own key at that moment. A broker on this machine is trusted at
    once; --server-key KEY avoids the risk entirely. If a remembered broker's key
    ever changes, the client refuses to connect and says how to accept the change.
    """
    logging.basicConfig(
        level=log_level.upper(),
        format="%(levelname)s %(name)s: %(message)s",
        stream=_CurrentStderr(),
    )
    password = read_password(password_file)
    trust = trust_options(port, key_port, known_brokers, server_key, trust_new_broker)
    connect = partial(
        connect_trusted, host, port, trust, connect_timeout=connect_timeout, tell=tell
    )
    if sys.stdin.isatty():
        options = InteractiveOptions(user, password, register, room, wants_colour(), history)
        code = _run(run_interactive(options, partial(connect, ask=confirm)))
    else:
        if user is None:
            raise click.UsageError("script mode needs --user")
        if password is None:
            raise click.UsageError(f"script mode needs --password-file or ${PASSWORD_ENV}")
        script = ScriptOptions(user, password, register, room or DEFAULT_ROOM, history)
        code = _run(run_script(script, partial(connect, ask=None)))
    sys.exit(code)


def _run(work: Coroutine[Any, Any, int]) -> int:
    """Run a mode to completion, turning a zchat error into one line (a changed key: its
    banner) and exit code 1."""
    try:
        return asyncio.run(work)
    except BrokerKeyChanged as exc:
        for line in exc.message.splitlines():
            click.echo(safe(line, one_line=True), err=True)
        return 1
    except ZchatError as exc:
        click.echo(f"zchat-client: {safe(exc.message, one_line=True)}", err=True)
        return 1
    except KeyboardInterrupt:
        return 0
