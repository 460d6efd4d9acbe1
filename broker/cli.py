"""`zchat-broker`: run the broker from the command line."""

from __future__ import annotations

import asyncio
import logging
import os
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
from .datadir import DataDirInUse, DataDirLock, prepare_data_dir
from .keys import BrokerKeys, KeyFileError, load_or_create_keys
from .lifeline import EXIT_WITH_STDIN, stop_when_stdin_closes
from .server import Endpoints, run_broker
from .sqlite_storage import StorageError
from .throttle import Limits

LIMIT_OPTIONS: dict[str, tuple[click.ParamType[Any], str]] = {
    "message_rate": (
        click.FloatRange(min=0.1),
        "Room and direct messages per second, per session and per account (its sessions share).",
    ),
    "message_burst": (
        click.IntRange(min=1),
        "Messages a session (or account) may send at once.",
    ),
    "membership_rate": (
        click.FloatRange(min=0.01),
        "Joins and leaves per second per account.",
    ),
    "membership_burst": (click.IntRange(min=1), "Joins and leaves an account may make at once."),
    "rooms_per_hour": (click.FloatRange(min=0.01), "Rooms one account may create per hour."),
    "room_burst": (click.IntRange(min=1), "Rooms one account may create at once."),
    "max_rooms": (click.IntRange(min=1), "Rooms the broker holds at most."),
    "login_free_failures": (
        click.IntRange(min=0),
        "Failed logins answered without delay (per account, per address, per both).",
    ),
    "login_max_failures": (
        click.IntRange(min=1),
        "Failed logins for one account from one address, or from one address, before "
        "too_many_attempts; an account's failures from elsewhere only delay, so strangers "
        "cannot lock its owner out.",
    ),
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
    "connection_request_rate": (
        click.FloatRange(min=1),
        "Requests per second per connection; more are refused unread.",
    ),
    "connection_request_burst": (click.IntRange(min=1), "Requests a connection may send at once."),
    "address_request_rate": (
        click.FloatRange(min=1),
        "Requests per second per address; more are refused unread.",
    ),
    "address_request_burst": (click.IntRange(min=1), "Requests an address may send at once."),
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
            prepare_data_dir(config.resolved_data_dir)
            _echo_key(load_or_create_keys(config.resolved_data_dir))
        except (KeyFileError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc
        return

    started = False
    lock: DataDirLock | None = None

    def ready(endpoints: Endpoints) -> None:
        nonlocal started
        started = True
        host = f"[{endpoints.host}]" if ":" in endpoints.host else endpoints.host
        if lock is not None:
            lock.describe(f"pid {os.getpid()}, listening on {host}:{endpoints.port}")
        click.echo(f"Running chat server at {host}:{endpoints.port}")
        click.echo(f"Publishing rooms at {host}:{endpoints.pub_port}")
        click.echo(f"Key service at {host}:{endpoints.key_port}")
        _echo_key(endpoints.keys)
        click.echo(f"Data in {config.database_path}")

    try:
        prepare_data_dir(config.resolved_data_dir)
        lock = DataDirLock(config.resolved_data_dir)
        try:
            asyncio.run(_serve(config, ready, exit_with_stdin))
        finally:
            lock.release()
    except Exception as exc:
        failure = operator_failure(exc)
        if failure is None:
            raise
        message = str(failure)
        if started and isinstance(failure, StorageError):
            message = f"the database failed, so the broker stopped: {failure}"
        raise click.ClickException(message) from exc
    click.echo("Broker stopped.")


OPERATOR_ERRORS = (StorageError, KeyFileError, DataDirInUse, OSError, zmq.ZMQError)
"""Failures the operator can act on: told in one line, not a traceback."""


def operator_failure(error: BaseException) -> BaseException | None:
    """``error`` if it is one of `OPERATOR_ERRORS`, or the first such error in a task
    group's (a serving task that failed stops them all); None for anything else."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = operator_failure(inner)
            if found is not None:
                return found
        return None
    return error if isinstance(error, OPERATOR_ERRORS) else None


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
