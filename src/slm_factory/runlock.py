"""One run at a time per project.

Two `generate` runs started on the same project ran side by side to the end, each making every
teacher call into the same ledger: twice the cost. A run therefore holds an OS file lock on
`output/.lock` while it writes. The operating system releases the lock when its process ends, in
any way (kill -9, a crash, a power cut), so a lock left by a dead run can never block the next
one; the file's text only says who holds it, for the message a second run prints.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

LOCK_FILE = ".lock"


class ProjectBusy(Exception):
    """Another process is running a stage of this project; the message is one line for the user."""


@contextmanager
def project_lock(output_dir: Path, command: str) -> Iterator[dict[str, object] | None]:
    """Hold the project's run lock for the block; yields what a dead holder left (or None)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        if not _try_lock(fd):
            raise ProjectBusy(_busy_message(path, _holder(fd)))
        left = _holder(fd)  # text written by a run that ended without cleaning up: it is stale
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me(command)).encode(), 0)
        try:
            yield left
        finally:
            os.ftruncate(fd, 0)
            _unlock(fd)
    finally:
        os.close(fd)


def _me(command: str) -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _holder(fd: int) -> dict[str, object] | None:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _busy_message(path: Path, holder: dict[str, object] | None) -> str:
    who = "another process"
    if holder:
        who = f"process {holder.get('pid')} ('{holder.get('command')}', started {holder.get('started')}"
        who += f" on {holder['host']})" if holder.get("host") != socket.gethostname() else ")"
    return (
        f"{who} is already running a stage of this project ({path.parent}); "
        "wait for it to finish or stop it, then run again"
    )


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
