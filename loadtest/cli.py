"""`zchat-load`: drive a broker with many real clients and report what it delivered.

The coordinator (this module) starts the broker if asked, splits the members
over worker processes (`worker`), moves them through the phases together —
log in and join, run from a common start to a common end, settle, drain to
each room's final seq, repair gaps — and merges their figures into the table
and the JSON file. Every phase has a deadline, so a run always ends; Ctrl-C
stops the workers and still prints what was measured (marked partial).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import click

from .config import DEFAULT_PASSWORD, ConfigError, LoadConfig, assign, is_loopback
from .report import ProgressBar, render_table, write_json
from .stats import BrokerUsage, Figures, WorkerResult, summarise
from .target import SpawnedBroker, Target, TargetError, resolve_running
from .worker import SETTLE_TIMEOUT_S, worker_main

START_DELAY_S = 0.5
"""The common start is this far after the last member joined, so every worker is ready."""
STOP_GRACE_S = 15.0
THROTTLE_CODES = {"rate_limited", "limit_reached", "too_many_attempts"}


class LoadError(Exception):
    """The run could not be done (a worker failed, the broker vanished...)."""


@dataclass
class WorkerHandle:
    process: BaseProcess
    control: Connection
    progress: dict[str, Any] = field(default_factory=dict)
    joined: bool | None = None
    settled: dict[str, int] | None = None
    result: WorkerResult | None = None
    error: str | None = None


class Coordinator:
    """Runs the phases over the workers; owns the progress bar."""

    def __init__(
        self,
        config: LoadConfig,
        target: Target,
        broker: SpawnedBroker | None,
        profile_path: Path | None = None,
    ) -> None:
        self.config = config
        self.profile_path = profile_path
        self.profiler: subprocess.Popen[bytes] | None = None
        self.target = target
        self.broker = broker
        self.bar = ProgressBar()
        self.workers: list[WorkerHandle] = []
        self.stopped = False
        self.login_join_s = 0.0
        self.window_s = 0.0
        self.run_span: tuple[float, float] | None = None
        """Monotonic start and end of the measured window, once it has begun."""
        self.usage: BrokerUsage | None = None

    # --- workers -------------------------------------------------------------------

    def start_workers(self) -> None:
        plan = assign(self.config)
        context = multiprocessing.get_context("spawn")
        slots = max(1, self.config.login_concurrency // len(plan))
        for specs in plan:
            parent, child = context.Pipe(duplex=True)
            process = context.Process(
                target=worker_main,
                args=(
                    child,
                    self.config,
                    specs,
                    self.target.host,
                    self.target.port,
                    self.target.server_key,
                    self.config.clients,
                    slots,
                    self.broker is None,
                ),
                daemon=True,
            )
            process.start()
            child.close()
            self.workers.append(WorkerHandle(process, parent))

    def pump(self, timeout_s: float) -> None:
        """Take every message the workers sent, waiting up to ``timeout_s`` for the first."""
        live = [w.control for w in self.workers if w.result is None and w.error is None]
        if not live:
            time.sleep(min(timeout_s, 0.05))
            return
        for ready in wait(live, timeout=timeout_s):
            handle = next(w for w in self.workers if w.control is ready)
            try:
                while handle.control.poll():
                    self._take(handle, handle.control.recv())
            except (EOFError, OSError):
                if handle.result is None:
                    handle.error = handle.error or f"worker exited with {handle.process.exitcode}"

    def _take(self, handle: WorkerHandle, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "progress":
            handle.progress = message[1]
        elif kind == "joined":
            handle.joined = message[1]
        elif kind == "settled":
            handle.settled = message[1]
        elif kind == "result":
            handle.result = message[1]
        elif kind == "error":
            handle.error = message[1]

    def broadcast(self, message: tuple[Any, ...]) -> None:
        for handle in self.workers:
            if handle.result is None and handle.error is None:
                try:
                    handle.control.send(message)
                except OSError:
                    handle.error = handle.error or "worker pipe closed"

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.broadcast(("stop",))

    def failed(self) -> str | None:
        return next((w.error for w in self.workers if w.error), None)

    def total(self, name: str) -> int:
        return sum(int(w.progress.get(name, 0)) for w in self.workers)

    def wait_until(self, done: Any, deadline: float, show: Any) -> bool:
        while not done():
            error = self.failed()
            if error:
                raise LoadError(f"a load worker failed: {error}")
            if time.monotonic() >= deadline:
                return False
            self.pump(0.1)
            show()
        return True

    # --- phases --------------------------------------------------------------------

    def run(self) -> None:
        config = self.config
        population = config.clients + config.login_storm
        self.start_workers()
        began = time.monotonic()

        def show_login() -> None:
            done = self.total("logged_in")
            self.bar.show(
                "login",
                self.total("joined"),
                config.clients,
                f"{self.total('joined')}/{config.clients} joined, "
                f"{done} logged in, {time.monotonic() - began:.0f} s",
            )

        joined_all = self.wait_until(
            lambda: all(w.joined is not None for w in self.workers),
            began + config.join_deadline_s + 30,
            show_login,
        )
        show_login()
        self.login_join_s = time.monotonic() - began
        if not joined_all:
            self.stop()
        del population

        start_wall = time.time() + START_DELAY_S
        self.broadcast(("start", start_wall, start_wall + config.duration_s))
        start = time.monotonic() + START_DELAY_S
        end = start + config.duration_s
        self.wait_until(lambda: time.monotonic() >= start, start + 5, lambda: None)
        self.run_span = (start, end)
        cpu_start = self.broker.cpu_seconds() if self.broker else 0.0
        threads_start = self.broker.cpu_by_thread() if self.broker else {}
        if self.broker is not None and self.profile_path is not None:
            self.profiler = self.broker.profile(self.profile_path, config.duration_s)
        previous = (time.monotonic(), self.total("accepted"), self.total("deliveries"))
        rates = (0.0, 0.0)

        def show_run() -> None:
            nonlocal previous, rates
            now = time.monotonic()
            accepted, deliveries = self.total("accepted"), self.total("deliveries")
            if now - previous[0] >= 1.0:
                span = now - previous[0]
                rates = ((accepted - previous[1]) / span, (deliveries - previous[2]) / span)
                previous = (now, accepted, deliveries)
            self.bar.show(
                "run",
                now - start,
                config.duration_s,
                f"{now - start:4.1f}/{config.duration_s:g} s  {rates[0]:,.0f} msg/s  "
                f"{rates[1]:,.0f} deliveries/s  errors {self.total('errors')}",
            )

        self.wait_until(lambda: time.monotonic() >= end or self.stopped, end + 5, show_run)
        self.window_s = min(time.monotonic(), end) - start
        if self.broker is not None:
            cpu = self.broker.cpu_seconds() - cpu_start
            threads = {
                name: spent - threads_start.get(name, 0.0)
                for name, spent in self.broker.cpu_by_thread().items()
            }
            rss, _ = self.broker.memory()
            self.usage = BrokerUsage(cpu, rss, 0, self.broker.baseline_rss_kb, threads)
        show_run()

        self.wait_until(
            lambda: all(w.settled is not None for w in self.workers),
            time.monotonic() + SETTLE_TIMEOUT_S + 10,
            lambda: self.bar.show("settle", 0, 1, "waiting for sends in flight"),
        )
        finals: dict[str, int] = {}
        for handle in self.workers:
            for room, seq in (handle.settled or {}).items():
                finals[room] = max(finals.get(room, 0), seq)
        self.broadcast(("final", finals))
        self.wait_until(
            lambda: all(w.result is not None for w in self.workers),
            time.monotonic() + 2 * config.drain_timeout_s + 20,
            lambda: self.bar.show(
                "drain",
                self.total("caught_up"),
                config.clients,
                f"{self.total('caught_up')}/{config.clients} members caught up",
            ),
        )

    def figures(self) -> Figures:
        results = [w.result for w in self.workers if w.result is not None]
        if not self.window_s and self.run_span is not None:  # interrupted while running
            start, end = self.run_span
            self.window_s = max(min(time.monotonic(), end) - start, 0.0)
        if self.broker is not None and self.usage is not None:
            _, peak = self.broker.memory()
            self.usage = dataclasses.replace(self.usage, peak_rss_kb=peak)
        config = self.config
        figures = summarise(
            results=results,
            rooms=config.rooms,
            members=config.members,
            mode="saturate" if config.saturate else ("idle" if config.idle else "rate"),
            offered_rate=config.rate,
            size=config.size,
            duration_s=config.duration_s,
            window_s=self.window_s,
            login_join_s=self.login_join_s,
            storm_clients=config.login_storm,
            broker=self.usage,
        )
        if self.stopped or len(results) < len(self.workers):
            figures = dataclasses.replace(figures, complete=False)
        return figures

    def shut_down(self) -> None:
        self.bar.close()
        if self.profiler is not None:
            try:
                self.profiler.wait(30)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
                self.profiler.wait()
        self.stop()
        deadline = time.monotonic() + STOP_GRACE_S
        for handle in self.workers:
            handle.process.join(max(deadline - time.monotonic(), 0.1))
            if handle.process.is_alive():
                handle.process.terminate()
                handle.process.join(5)
            handle.control.close()


def throttle_hint(figures: Figures, spawned: bool) -> str | None:
    codes = set(figures.send_errors) | set(figures.login_errors)
    if spawned or not codes & THROTTLE_CODES:
        return None
    return (
        "The broker throttled the load (see the errors above). Start it with limits that fit "
        "one address running many clients, e.g. --sessions-per-address 100000 "
        "--message-rate 1000000 --message-burst 1000000 --pending-auth-per-address 64 "
        "--registrations-per-hour 100000 --registration-burst 100000 "
        "(and, for the first run that registers, --login-max-failures 100000 "
        "--login-free-failures 100000)."
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--spawn-broker", is_flag=True, help="Start a fresh broker on free loopback ports.")
@click.option("--host", default=None, help="A running broker's address (loopback or explicit).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Its request port.")
@click.option(
    "--server-key", default=None, help="Its public key (else asked from the key service)."
)
@click.option("--key-port", type=click.IntRange(1, 65535), default=None, help="Key service port.")
@click.option("--rooms", type=int, required=True, help="Rooms.")
@click.option("--members", type=int, required=True, help="Members per room (one client each).")
@click.option("--duration", type=float, required=True, help="Seconds of load after all joined.")
@click.option("--rate", type=float, default=None, help="Messages per second in total (0: idle).")
@click.option("--saturate", is_flag=True, help="Send as fast as the broker accepts.")
@click.option("--size", type=int, default=100, show_default=True, help="Bytes per message.")
@click.option(
    "--processes",
    type=int,
    default=0,
    help="Worker processes [default: one per 500 members, and one per core; a run that "
    "does not saturate leaves a spawned broker a core].",
)
@click.option(
    "--window", type=int, default=8, show_default=True, help="Unanswered sends per member."
)
@click.option(
    "--echo-window",
    is_flag=True,
    help="With --saturate: a send leaves the window only when its sender received it.",
)
@click.option(
    "--decrypt-every",
    type=int,
    default=0,
    help="Open one delivery in N for latency and integrity [default: 8]; every one is "
    "still received and seq-checked.",
)
@click.option(
    "--login-storm",
    type=int,
    default=0,
    help="Extra clients that all log in at once, a sixth of the way into the run.",
)
@click.option("--logins-in-flight", type=int, default=0, help="Logins waiting at once.")
@click.option("--no-register", is_flag=True, help="Never register missing accounts.")
@click.option("--pub-hwm", type=int, default=None, help="Spawned broker's --pub-hwm.")
@click.option("--prefix", default="load", show_default=True, help="Account and room prefix.")
@click.option(
    "--password",
    envvar="ZCHAT_LOAD_PASSWORD",
    default=None,
    help="Load accounts' password [env ZCHAT_LOAD_PASSWORD].",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--profile-broker",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --spawn-broker: py-spy the broker over the run (.svg flame graph, .txt raw).",
)
def main(
    spawn_broker: bool,
    host: str | None,
    port: int | None,
    server_key: str | None,
    key_port: int | None,
    rooms: int,
    members: int,
    duration: float,
    rate: float | None,
    saturate: bool,
    size: int,
    processes: int,
    window: int,
    echo_window: bool,
    decrypt_every: int,
    login_storm: int,
    logins_in_flight: int,
    no_register: bool,
    pub_hwm: int | None,
    prefix: str,
    password: str | None,
    json_path: Path | None,
    profile_broker: Path | None,
) -> None:
    """Load-test a zchat broker with ROOMS x MEMBERS real clients and report what it did."""
    try:
        config = LoadConfig(
            rooms=rooms,
            members=members,
            duration_s=duration,
            rate=rate,
            saturate=saturate,
            size=size,
            processes=processes,
            window=window,
            echo_window=echo_window,
            decrypt_every=decrypt_every,
            spawn_broker=spawn_broker,
            host=host,
            port=port,
            server_key=server_key,
            key_port=key_port,
            prefix=prefix,
            logins_in_flight=logins_in_flight,
            login_storm=login_storm,
            register=not no_register,
            password=password or DEFAULT_PASSWORD,
        ).validate()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    if host is not None and not is_loopback(host):
        click.echo(f"Target {host} is not loopback: sending load there as asked.", err=True)
    # Ctrl-C and SIGTERM both stop the run with a partial report, even when started with
    # SIGINT ignored (as a background job of a script is).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    if profile_broker is not None and not spawn_broker:
        raise click.UsageError("--profile-broker needs --spawn-broker")
    code = run(config, json_path, pub_hwm, profile_broker)
    sys.exit(code)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(
    config: LoadConfig,
    json_path: Path | None,
    pub_hwm: int | None = None,
    profile_path: Path | None = None,
) -> int:
    """One whole run; returns the exit code (0: complete and nothing lost)."""
    broker: SpawnedBroker | None = None
    coordinator: Coordinator | None = None
    interrupted = False
    try:
        if config.spawn_broker:
            broker = SpawnedBroker(pub_hwm=pub_hwm)
            target = broker.start()
            assert broker.process is not None
            click.echo(
                f"Spawned broker (pid {broker.process.pid}) at {target.host}:{target.port}",
                err=True,
            )
        else:
            assert config.host is not None and config.port is not None
            target = resolve_running(config.host, config.port, config.server_key, config.key_port)
        coordinator = Coordinator(config, target, broker, profile_path)
        try:
            coordinator.run()
        except KeyboardInterrupt:
            interrupted = True
            coordinator.bar.close()
            click.echo("Interrupted: stopping the clients for a partial report...", err=True)
            coordinator.stop()
            handles = coordinator.workers
            with contextlib.suppress(KeyboardInterrupt, LoadError):
                coordinator.wait_until(
                    lambda: all(w.result is not None or w.error is not None for w in handles),
                    time.monotonic() + STOP_GRACE_S,
                    lambda: None,
                )
        coordinator.bar.close()
        figures = coordinator.figures()
    except (TargetError, LoadError) as exc:
        click.echo(f"zchat-load: {exc}", err=True)
        if broker is not None and broker.process is not None:
            click.echo(broker.log_tail(), err=True)
        return 2
    finally:
        if coordinator is not None:
            coordinator.shut_down()
        if broker is not None:
            registered = coordinator is not None and any(
                w.result is not None and w.result.registered for w in coordinator.workers
            )
            broker.stop(keep_accounts=registered)
    click.echo(render_table(figures))
    hint = throttle_hint(figures, broker is not None)
    if hint:
        click.echo(hint, err=True)
    if json_path is not None:
        write_json(json_path, figures)
    if interrupted:
        return 130
    complete = figures.complete and figures.joined == config.clients
    return 0 if complete and figures.lost == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    main()
    os._exit(0)
