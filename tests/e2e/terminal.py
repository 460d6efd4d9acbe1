"""Drive `zchat-client` through a pseudo-terminal and read its screen as plain text."""

from __future__ import annotations

import os
import re
import time

import pexpect

from tests.processes import script

ANSI = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])"
)
"""CSI sequences, OSC titles, charset selection and keypad modes: what a terminal eats."""


def strip_ansi(raw: str) -> str:
    return ANSI.sub("", raw).replace("\r", "")


class Terminal:
    """One interactive client in a pty; `expect` waits for text to appear, in order."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        environment = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")
        environment.pop("NO_COLOR", None)
        environment.pop("ZCHAT_PASSWORD", None)
        for size in ("COLUMNS", "LINES"):  # pytest-xdist sets them; the pty's size must count
            environment.pop(size, None)
        environment.update(env or {})
        self.child = pexpect.spawn(
            script("zchat-client"),
            list(args),
            env=environment,
            dimensions=(40, 120),
            encoding="utf-8",
            codec_errors="replace",
            timeout=15,
        )
        self.raw = ""
        self.position = 0

    @property
    def screen(self) -> str:
        """Everything shown so far, escapes removed."""
        return strip_ansi(self.raw)

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """Wait until ``pattern`` appears after the previous match; returns the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.screen, self.position)
            if match:
                self.position = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{pattern!r} did not appear; screen after the last match:\n"
                    + self.screen[self.position :]
                )
            self._read(remaining)

    def _read(self, timeout: float) -> None:
        try:
            self.raw += self.child.read_nonblocking(65536, timeout=min(timeout, 0.5))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF as exc:
            raise AssertionError("the client exited; screen:\n" + self.screen) from exc

    def sendline(self, line: str) -> None:
        self.child.sendline(line)

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Read until the client exits; its exit status."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.raw += self.child.read_nonblocking(65536, timeout=0.5)
            except pexpect.TIMEOUT:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        "the client did not exit; screen:\n" + self.screen
                    ) from None
            except pexpect.EOF:
                break
        self.child.close()
        assert self.child.exitstatus is not None, f"killed by signal {self.child.signalstatus}"
        return int(self.child.exitstatus)

    def close(self) -> None:
        """Kill the client if a test failed half-way."""
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()
