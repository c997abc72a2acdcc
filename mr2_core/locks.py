"""Lock files: one process at a time works on a training run or a simulation setting.

A lock is an advisory ``flock`` on a small file (``RUN/.lock``, ``CACHE/<key>.lock``) that holds the
owner's pid, host and start time, so that a second process can say who is busy with the work. The
kernel drops a ``flock`` when its process dies, however it dies: a lock file left behind by a killed
process is simply taken over by the next one (no pid guessing, no stale-lock timeout). The holder
removes the file when it is done.

POSIX only (``fcntl``). On a network file system the lock is as good as its ``flock`` support (Linux
NFS clients since 2.6.12 emulate it with byte-range locks, which the server sees).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Busy", "FileLock", "try_lock", "hold_lock", "wait_lock", "lock_owner"]


class Busy(RuntimeError):
    """Another live process holds the lock; the message names it (pid, host, since when)."""


@dataclass
class FileLock:
    """A held lock; ``release()`` (or leaving the ``with`` block) removes the file and unlocks it.

    ``previous`` is what a lock file left by a dead process said (its owner), or None for a fresh lock.
    """

    path: Path
    fd: int
    previous: str | None = None

    def release(self) -> None:
        if self.fd < 0:
            return
        # unlink while still holding the lock: a process that opened the old file finds it gone
        # (try_lock compares inodes) and locks a new one instead of sharing this one
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on host {info['host']} (since {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "another process (its lock file holds no owner)"


def lock_owner(path: str | os.PathLike) -> str:
    """Who holds (or last held) the lock at ``path``: 'pid P on host H (since T)'."""
    try:
        return _describe(Path(path).read_text())
    except OSError:
        return "another process"


def try_lock(path: str | os.PathLike) -> FileLock | None:
    """Take the lock at ``path`` (its folder is created), or return None when a live process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        # the holder may have released (and removed) the file between our open and flock: then we
        # hold a lock on a file nobody else can see, and must lock the new one instead
        try:
            same = os.path.samestat(os.stat(path), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        old = os.pread(fd, 4096, 0).decode(errors="replace")
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        return FileLock(path, fd, previous=_describe(old) if old.strip() else None)


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike, what: str) -> Iterator[FileLock]:
    """Hold the lock at ``path`` for the ``with`` block; ``Busy`` (naming ``what`` and the owner) when
    another live process holds it."""
    lock = try_lock(path)
    if lock is None:
        raise Busy(f"{what} is in use by {lock_owner(path)} (lock file {path})")
    with lock:
        yield lock


def wait_lock(path: str | os.PathLike, poll_s: float = 1.0) -> FileLock:
    """Take the lock at ``path``, waiting (polling every ``poll_s`` s) while another process holds it."""
    while (lock := try_lock(path)) is None:
        time.sleep(poll_s)
    return lock
