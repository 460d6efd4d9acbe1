"""`zchat-broker`: run the broker from the command line."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click
import zmq

from zchat.protocol.limits import LEASE_MS

from .config import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_PUB_PORT, BrokerConfig
from .server import Endpoints, run_broker
from .sqlite_storage import StorageError


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
def main(
    host: str, port: int, pub_port: int, data_dir: Path | None, log_level: str, lease_s: float
) -> None:
    """Run the zchat broker: one per team, every client connects to it."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = BrokerConfig(
        host=host,
        port=port,
        pub_port=pub_port,
        data_dir=data_dir,
        lease_ms=int(lease_s * 1000),
    )

    def ready(endpoints: Endpoints) -> None:
        click.echo(f"Running chat server at {endpoints.host}:{endpoints.port}")
        click.echo(f"Publishing rooms at {endpoints.host}:{endpoints.pub_port}")
        click.echo(f"Data in {config.database_path}")

    try:
        asyncio.run(_serve(config, ready))
    except (StorageError, zmq.ZMQError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("Broker stopped.")


async def _serve(config: BrokerConfig, ready: object) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_broker(config, stop, ready)  # type: ignore[arg-type]
