"""Run the real `zchat-broker` command for tests and watch what it prints."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from zchat.broker.lifeline import EXIT_WITH_STDIN, spawn_tied

LISTEN_LINE = re.compile(r"Running chat server at (?P<host>[^:\s]+):(?P<port>\d+)")
PUBLISH_LINE = re.compile(r"Publishing rooms at (?P<host>[^:\s]+):(?P<port>\d+)")
KEY_SERVICE_LINE = re.compile(r"Key service at (?P<host>[^:\s]+):(?P<port>\d+)")
KEY_LINE = re.compile(r"Broker key: (?P<key>\S{40})$")
FINGERPRINT_LINE = re.compile(r"Fingerprint: (?P<fingerprint>[A-Z2-7-]+)$")


def script(name: str) -> str:
    """Path of a console script installed beside the running interpreter."""
    return str(Path(sys.executable).parent / name)


def wait_gone(pidfd: int, timeout: float) -> bool:
    """True once the process of ``pidfd`` has exited, within ``timeout`` seconds."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


@dataclass
class OutputWatcher:
    """Collects a process's output lines on a thread so tests can wait for one."""

    lines: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def follow(self, stream: object) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            with self._changed:
                self.lines.append(raw.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 10.0) -> re.Match[str]:
        """The first line matching ``pattern``, waiting for it up to ``timeout`` seconds."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no line matched {regex.pattern!r}; output was:\n" + "\n".join(self.lines)
                    )
                self._changed.wait(remaining)

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)


@dataclass
class RunningBroker:
    """A `zchat-broker` subprocess on random loopback ports."""

    process: subprocess.Popen[str]
    output: OutputWatcher
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    pub_port: int = 0
    key_port: int = 0
    server_key: str = ""
    """The broker's public CurveZMQ key, Z85."""
    fingerprint: str = ""

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the broker and wait for it to exit; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            if self.process.stdin is not None:
                self.process.stdin.close()


LOOSE_LIMITS = ("--registration-burst", "1000", "--registrations-per-hour", "100000")
"""Every test client registers from 127.0.0.1; tests of the limits pass their own after these."""
UNGATED = ("--connection-request-rate", "1000000", "--connection-request-burst", "1000000")
"""For tests that pipeline thousands of requests on one connection on purpose."""


def start_broker(
    data_dir: Path, *extra: str, port: int = 0, pub_port: int = 0, key_port: int = 0
) -> RunningBroker:
    """Start `zchat-broker` on 127.0.0.1 (port 0: a free port) and wait until it listens.

    It dies with the test process, even one killed by a timeout (`spawn_tied`).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = spawn_tied(
        [
            script("zchat-broker"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--pub-port",
            str(pub_port),
            "--key-port",
            str(key_port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "INFO",
            EXIT_WITH_STDIN,
            *LOOSE_LIMITS,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    output = OutputWatcher()
    threading.Thread(target=output.follow, args=(process.stdout,), daemon=True).start()
    broker = RunningBroker(process, output, data_dir)
    try:
        listen = output.wait_for(LISTEN_LINE, timeout=20)
        publish = output.wait_for(PUBLISH_LINE, timeout=5)
        key_service = output.wait_for(KEY_SERVICE_LINE, timeout=5)
        key = output.wait_for(KEY_LINE, timeout=5)
        fingerprint = output.wait_for(FINGERPRINT_LINE, timeout=5)
    except TimeoutError:
        broker.stop(signal.SIGKILL)
        raise
    broker.port = int(listen["port"])
    broker.pub_port = int(publish["port"])
    broker.key_port = int(key_service["port"])
    broker.server_key = key["key"]
    broker.fingerprint = fingerprint["fingerprint"]
    return broker
