"""`zchat-broker`: run the broker from the command line."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import zmq

from zchat.protocol.limits import LEASE_MS

from .config import (
    DEFAULT_HOST,
    DEFAULT_KEY_PORT,
    DEFAULT_PORT,
    DEFAULT_PUB_HWM,
    DEFAULT_PUB_PORT,
    BrokerConfig,
    Retention,
)
from .keys import BrokerKeys, KeyFileError, load_or_create_keys
from .lifeline import EXIT_WITH_STDIN, stop_when_stdin_closes
from .server import Endpoints, run_broker
from .sqlite_storage import StorageError
from .throttle import Limits

LIMIT_OPTIONS: dict[str, tuple[click.ParamType[Any], str]] = {
    "message_rate": (click.FloatRange(min=0.1), "Messages per second per session."),
    "message_burst": (click.IntRange(min=1), "Messages a session may send at once."),
    "login_free_failures": (
        click.IntRange(min=0),
        "Failed logins per account or address answered without delay.",
    ),
    "login_max_failures": (click.IntRange(min=1), "Failed logins before too_many_attempts."),
    "login_delay_ms": (click.IntRange(min=0), "First login delay; doubles per failure."),
    "login_max_delay_ms": (click.IntRange(min=0), "Longest login delay."),
    "login_window_ms": (click.IntRange(min=1000), "Failed logins are forgotten after this."),
    "registrations_per_hour": (
        click.FloatRange(min=0.01),
        "Accounts one address may create per hour.",
    ),
    "registration_burst": (click.IntRange(min=1), "Accounts one address may create at once."),
    "sessions_per_address": (click.IntRange(min=1), "Sessions one address may hold."),
    "rooms_per_session": (click.IntRange(min=1), "Rooms one session may be in at once."),
    "pending_auth_per_address": (
        click.IntRange(min=1),
        "Logins and registrations one address may have waiting.",
    ),
}
"""One option per abuse limit, by `Limits` field; the flag is the field's name, defaults from
`Limits`."""


def limit_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the `LIMIT_OPTIONS` to a click command."""
    defaults = Limits()
    for name, (kind, help_text) in reversed(LIMIT_OPTIONS.items()):
        flag = "--" + name.replace("_", "-")
        command = click.option(
            flag,
            name,
            type=kind,
            default=getattr(defaults, name),
            show_default=True,
            help=help_text,
        )(command)
    return command


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True, help="Request port (ROUTER); 0 = any free."
)
@click.option(
    "--pub-port",
    default=DEFAULT_PUB_PORT,
    show_default=True,
    help="Room traffic port (PUB); 0 = any free.",
)
@click.option(
    "--key-port",
    default=DEFAULT_KEY_PORT,
    show_default=True,
    help="Plaintext key service: hands out the broker's public key; 0 = any free.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the SQLite database lives [default: the per-user data directory].",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
@click.option(
    "--lease",
    "lease_s",
    type=click.FloatRange(min=1.0, max=3600.0),
    default=LEASE_MS / 1000,
    show_default=True,
    help="Seconds without a ping after which a client is dropped from its rooms.",
)
@click.option(
    "--pub-hwm",
    type=click.IntRange(min=100),
    default=DEFAULT_PUB_HWM,
    show_default=True,
    help="Publications (each a batch of up to 256 room events, at most 16 KiB) queued per "
    "subscriber before ZeroMQ drops for that subscriber.",
)
@click.option(
    "--show-key",
    is_flag=True,
    help="Print the broker's public key and fingerprint (making them if new) and exit.",
)
@click.option(
    "--history-days",
    type=click.FloatRange(min=0.001),
    default=Retention().days,
    show_default=True,
    help="Room messages older than this many days are deleted.",
)
@click.option(
    "--history-max",
    type=click.IntRange(min=1),
    default=Retention().max_per_room,
    show_default=True,
    help="Most messages kept per room; older ones are deleted.",
)
@click.option(
    EXIT_WITH_STDIN,
    "exit_with_stdin",
    is_flag=True,
    help="Stop (as on SIGTERM) when standard input closes: a broker started by another "
    "program on a pipe then never outlives it.",
)
@limit_options
def main(
    host: str,
    port: int,
    pub_port: int,
    data_dir: Path | None,
    log_level: str,
    lease_s: float,
    pub_hwm: int,
    key_port: int,
    show_key: bool,
    history_days: float,
    history_max: int,
    exit_with_stdin: bool,
    **limits: Any,
) -> None:
    """Run the zchat broker: one per team, every client connects to it."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    open_files = raise_open_file_limit()
    logging.getLogger(__name__).info(
        "open-file limit %d (about %d clients)", open_files, open_files // 2
    )
    config = BrokerConfig(
        host=host,
        port=port,
        pub_port=pub_port,
        key_port=key_port,
        data_dir=data_dir,
        lease_ms=int(lease_s * 1000),
        pub_hwm=pub_hwm,
        limits=Limits(**limits),
        retention=Retention(days=history_days, max_per_room=history_max),
    )

    if show_key:
        try:
            _echo_key(load_or_create_keys(config.resolved_data_dir))
        except (KeyFileError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc
        return

    def ready(endpoints: Endpoints) -> None:
        host = f"[{endpoints.host}]" if ":" in endpoints.host else endpoints.host
        click.echo(f"Running chat server at {host}:{endpoints.port}")
        click.echo(f"Publishing rooms at {host}:{endpoints.pub_port}")
        click.echo(f"Key service at {host}:{endpoints.key_port}")
        _echo_key(endpoints.keys)
        click.echo(f"Data in {config.database_path}")

    try:
        asyncio.run(_serve(config, ready, exit_with_stdin))
    except (StorageError, KeyFileError, OSError, zmq.ZMQError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("Broker stopped.")


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard one: each client holds two connections,
    and the usual soft limit of 1,024 would cap a broker near 500 clients. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            logging.getLogger(__name__).warning("cannot raise the open-file limit above %d", soft)
    return soft


def _echo_key(keys: BrokerKeys) -> None:
    click.echo(f"Broker key: {keys.public}")
    click.echo(f"Fingerprint: {keys.fingerprint}")


async def _serve(config: BrokerConfig, ready: object, exit_with_stdin: bool = False) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if exit_with_stdin:
        stop_when_stdin_closes(loop, stop)
    await run_broker(config, stop, ready)  # type: ignore[arg-type]
