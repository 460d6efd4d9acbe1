"""The broker under load: one spawned for the run, or one already running.

A spawned broker runs on free loopback ports from a copy of a cached data
directory that keeps the load accounts (and the broker key) between runs, so
passwords are hashed once per account, never weakened. It runs in its own
session, so Ctrl-C on the load generator does not reach it; the generator
stops it when the report is done, and it dies with the generator however that
ends (`zchat.broker.lifeline`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import zmq

from zchat.broker.lifeline import EXIT_WITH_STDIN, spawn_tied
from zchat.protocol import ServerKey, ZchatError, decode_incoming, encode_request
from zchat.protocol.codec import Reply
from zchat.protocol.limits import KEY_PORT_OFFSET

LISTEN_LINE = re.compile(r"Running chat server at (?P<host>[^:\s]+):(?P<port>\d+)")
KEY_LINE = re.compile(r"Broker key: (?P<key>\S{40})$", re.MULTILINE)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0

SPAWN_LIMITS = (
    "--message-rate",
    "1000000",
    "--message-burst",
    "1000000",
    "--sessions-per-address",
    "100000",
    "--registrations-per-hour",
    "10000000",
    "--registration-burst",
    "100000",
    "--pending-auth-per-address",
    "256",
    "--rooms-per-session",
    "64",
    "--login-free-failures",
    "1000000",
    "--login-max-failures",
    "1000000",
    "--connection-request-rate",
    "1000000",
    "--connection-request-burst",
    "1000000",
    "--address-request-rate",
    "10000000",
    "--address-request-burst",
    "10000000",
)
"""Every simulated client comes from 127.0.0.1: the per-address abuse limits are loosened
(a first run's logins of accounts not registered yet count as failures). Password hashing
is not touched."""


class TargetError(Exception):
    """The broker could not be started, reached or asked for its key."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load goes, and the key its CurveZMQ sockets need."""

    host: str
    port: int
    server_key: str


def cache_dir() -> Path:
    """The persistent data directory of the spawned brokers (accounts and broker key)."""
    return Path(platformdirs.user_cache_dir("zchat", appauthor=False)) / "loadtest" / "broker"


def fetch_server_key(host: str, key_port: int, timeout_s: float = 5.0) -> str:
    """Ask the broker's plaintext key service for its public key."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        dealer.connect(f"tcp://{host}:{key_port}")
        dealer.send(encode_request(1, ServerKey()))
        if not dealer.poll(int(timeout_s * 1000)):
            raise TargetError(f"no answer from the key service at {host}:{key_port}")
        reply = decode_incoming(dealer.recv())
    except ZchatError as exc:
        raise TargetError(f"the key service at {host}:{key_port} answered badly: {exc}") from exc
    finally:
        dealer.close()
        context.term()
    if not isinstance(reply, Reply) or reply.result is None:
        raise TargetError(f"the key service at {host}:{key_port} refused: {reply}")
    key = reply.result.get("key")
    if not isinstance(key, str) or len(key) != 40:
        raise TargetError("the key service sent no usable key")
    return key


def resolve_running(host: str, port: int, server_key: str | None, key_port: int | None) -> Target:
    """A running broker: its key as given, else from its key service."""
    key = server_key or fetch_server_key(host, key_port or port + KEY_PORT_OFFSET)
    return Target(host, port, key)


def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of a process, from /proc."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


def _cpu_seconds(stat_path: Path) -> float:
    """User + system CPU from a /proc stat file (a process: all its threads)."""
    try:
        fields = stat_path.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _threads_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (threads of one name added up), from /proc."""
    spent: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        spent[name] = spent.get(name, 0.0) + _cpu_seconds(task / "stat")
    return spent


class SpawnedBroker:
    """A `zchat-broker` child on free loopback ports, with its CPU and memory readable."""

    def __init__(self, pub_hwm: int | None = None, log_level: str = "WARNING") -> None:
        self.pub_hwm = pub_hwm
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="zchat-load-"))
        self.data_dir = self._workdir / "data"
        self.log_path = self._workdir / "broker.log"
        self.target: Target | None = None
        self.baseline_rss_kb = 0

    def start(self) -> Target:
        template = cache_dir()
        if template.exists():
            shutil.copytree(template, self.data_dir)
        else:
            self.data_dir.mkdir(parents=True)
        command = [
            sys.executable,
            "-m",
            "zchat.broker",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--pub-port",
            "0",
            "--key-port",
            "0",
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            self.log_level,
            "--lease",
            "60",
            EXIT_WITH_STDIN,
            *SPAWN_LIMITS,
        ]
        if self.pub_hwm:
            command += ["--pub-hwm", str(self.pub_hwm)]
        with self.log_path.open("wb") as log:
            self.process = spawn_tied(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            listen, key = LISTEN_LINE.search(text), KEY_LINE.search(text)
            if listen and key:
                self.target = Target("127.0.0.1", int(listen["port"]), key["key"])
                time.sleep(0.2)  # let it settle before the baseline
                self.baseline_rss_kb = self.memory()[0]
                return self.target
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise TargetError(f"the broker did not start; its output:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        return _cpu_seconds(Path(f"/proc/{self.process.pid}/stat")) if self.process else 0.0

    def cpu_by_thread(self) -> dict[str, float]:
        """CPU seconds so far per thread name: the event loop, ZeroMQ's I/O, the hashers."""
        return _threads_cpu(self.process.pid) if self.process else {}

    def profile(self, output: Path, seconds: float) -> subprocess.Popen[bytes] | None:
        """Sample the broker with py-spy (the `bench` extra) for ``seconds``, into ``output``."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if self.process is None or not Path(spy).exists():
            return None
        return subprocess.Popen(  # noqa: S603 (py-spy beside our interpreter, our own pid)
            [
                spy,
                "record",
                "--pid",
                str(self.process.pid),
                "--duration",
                str(max(1, int(seconds))),
                "--rate",
                "250",
                "--nonblocking",
                "--output",
                str(output),
                *(["--format", "raw"] if output.suffix == ".txt" else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def memory(self) -> tuple[int, int]:
        """(RSS, peak RSS) in kB."""
        if self.process is None:
            return 0, 0
        status = _proc_status(self.process.pid)
        return status.get("VmRSS", 0), status.get("VmHWM", 0)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, keep_accounts: bool = False) -> int | None:
        """Stop the broker; with ``keep_accounts``, its data becomes the cached template."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
            if self.process.stdin is not None:
                self.process.stdin.close()
        if keep_accounts and code == 0:
            template = cache_dir()
            staging = template.with_name(template.name + f".new-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(self.data_dir, staging)
            shutil.rmtree(template, ignore_errors=True)
            staging.rename(template)
        shutil.rmtree(self._workdir, ignore_errors=True)
        return code
