"""The data directory: private to the broker's user, and used by one broker at a time.

Two brokers on one database would hand out the same sequence numbers and break
every room both serve, so a second one refuses to start. The guard is an
exclusive `flock` on ``broker.lock``: the kernel drops it when its holder
exits, however it dies, so a killed broker never blocks a restart. The file
says who holds it (pid and address), for the refusal. It is never deleted:
deleting a lock file lets two processes each lock a different one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "broker.lock"


class DataDirInUse(Exception):
    """Another broker holds the data directory."""


def prepare_data_dir(data_dir: Path) -> None:
    """Create the data directory if needed; either way, only its owner may enter it."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if data_dir.stat().st_mode & 0o077:
        data_dir.chmod(0o700)


class DataDirLock:
    """The lock on one data directory, held until `release` (or the process ends)."""

    def __init__(self, data_dir: Path) -> None:
        """Take the lock, or raise `DataDirInUse` naming the broker that holds it."""
        path = data_dir / LOCK_FILE
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(self._fd)
            raise DataDirInUse(
                f"another broker is using {data_dir} ({holder or 'starting'}); "
                "stop it first or give another --data-dir"
            ) from None
        self.describe(f"pid {os.getpid()}")

    def describe(self, holder: str) -> None:
        """Say who holds the lock (shown to a broker that finds it taken)."""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, holder.encode("utf-8") + b"\n", 0)

    def release(self) -> None:
        os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the last descriptor drops the flock
