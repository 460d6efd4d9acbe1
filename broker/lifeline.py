"""A broker started by another program dies with that program, however it dies.

A load generator or benchmark that is killed (SIGKILL included) must not leave its broker
running forever. Two mechanisms, so that neither a missed signal nor another platform does:

- Linux: between fork and exec the child asks the kernel for SIGTERM when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``). The kernel sends it when the *thread* that forked exits, so
  spawn from the main thread or one that lives as long as the child should.
- Everywhere: the child's stdin is a pipe whose write end only the parent holds; a broker
  started with ``--exit-with-stdin`` stops as on SIGTERM when it reads end of file, which
  happens when the parent exits, whatever ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

EXIT_WITH_STDIN = "--exit-with-stdin"
"""The broker option that makes it stop when its stdin closes."""
PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""


def _death_signal_setter() -> Callable[[], None] | None:
    """A pre-exec function that ties the child to this thread, or None off Linux.

    libc and its ``prctl`` are looked up here, in the parent: the child between fork and exec
    only calls them.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    sigterm = int(signal.SIGTERM)

    def tie() -> None:
        prctl(PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return tie


def spawn_tied(command: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """Start ``command`` so that it dies with this process.

    ``command`` should watch its stdin (a broker: pass `EXIT_WITH_STDIN`); stdin is a pipe
    this process holds open until the child is waited for. The other keyword arguments go
    to `subprocess.Popen`.
    """
    return subprocess.Popen(  # noqa: S603 (the caller's own command)
        list(command),
        stdin=subprocess.PIPE,
        # Safe with threads: between fork and exec it takes no lock, only calls prctl.
        preexec_fn=_death_signal_setter(),  # noqa: PLW1509
        **popen,
    )


def stop_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Set ``stop`` on ``loop`` once stdin reaches end of file (or fails to read).

    A daemon thread reads it, so this works wherever stdin is a pipe, on any platform.
    """

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        with contextlib.suppress(RuntimeError):  # the loop has closed: stopped already
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
