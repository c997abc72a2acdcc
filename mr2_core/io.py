"""Atomic, crash-safe writes: a reader never sees a half-written result or checkpoint.

Each writer writes to a temporary file in the destination's folder, flushes and fsyncs it, then
renames it over the destination (``os.replace`` is atomic on POSIX within one file system). A writer
killed before the rename leaves its temporary file (``.<name>.<random>.tmp``) behind; the next write of
the same destination removes such leftovers once they are ``STALE_TMP_S`` old (``clean_tmp``).
``check_writable_dir`` refuses an output folder that cannot be written, before any work starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from mr2_core.checks import bad

__all__ = [
    "atomic_open",
    "write_json",
    "write_text",
    "write_csv",
    "torch_save",
    "read_json",
    "code_version",
    "check_writable_dir",
    "clean_tmp",
    "STALE_TMP_S",
]

# A temporary file of atomic_open this old (seconds since its last write) belongs to a writer that
# died: a live writer writes its file right after opening it, in seconds even for a checkpoint.
STALE_TMP_S = 3600.0
# mkstemp's names: prefix, 8 characters from [a-z0-9_], suffix
_TMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_tmp(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file private (0600); results are meant to be shared like any written file
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def clean_tmp(path: str | os.PathLike, older_than_s: float = STALE_TMP_S) -> list[Path]:
    """Remove the temporary files that interrupted ``atomic_open`` writes left behind.

    ``path`` is a destination file (its own leftovers ``.<name>.<random>.tmp`` are removed) or a
    folder (every such leftover in it). Only files not written for ``older_than_s`` seconds are
    removed, so a concurrent writer's file survives; pass 0 when a lock guarantees no other writer.
    Returns the removed paths.
    """
    path = Path(path)
    folder, target = (path, None) if path.is_dir() else (path.parent, path.name)
    removed = []
    now = time.time()
    with contextlib.suppress(OSError):  # a missing or unreadable folder holds nothing to clean
        for entry in os.scandir(folder):
            m = _TMP_NAME.match(entry.name)
            if m is None or (target is not None and m["target"] != target):
                continue
            with contextlib.suppress(OSError):  # another process removed it first
                if now - entry.stat(follow_symlinks=False).st_mtime >= older_than_s:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def check_writable_dir(path: str | os.PathLike, name: str) -> Path:
    """``path`` as a Path if it is a folder this process can write into, or can create; else a
    ValueError naming ``name`` (the option, e.g. ``--out``), the path and the fix.

    Nothing is created: commands call this first, so that a bad output place is reported before any
    data is loaded or any work is done. An empty path is refused: it would mean the current folder
    without saying so (``--out .`` says it).
    """
    if isinstance(path, str) and not path.strip():
        raise bad(
            name, path, "a folder path (an empty one would write into the current folder; pass . for that)"
        )
    path = Path(path)
    fix = f"pass another {name}"
    if path.exists():
        if not path.is_dir():
            raise bad(
                name, str(path), f"a folder to write into, but it is an existing file; {fix} or move it"
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise bad(
                name,
                str(path),
                f"a folder this user can write into, but it is read-only; {fix} or chmod u+w it",
            )
        return path
    for parent in [path, *path.absolute().parents]:
        if parent.is_dir():
            if not os.access(parent, os.W_OK | os.X_OK):
                raise bad(name, str(path), f"a folder that can be created, but {parent} is read-only; {fix}")
            break
        if parent.exists() or parent.is_symlink():  # a file, or a broken link, where a folder must go
            raise bad(name, str(path), f"a folder path, but {parent} is not a folder; {fix}")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (NumPy/torch values become lists)."""
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=2, default=_default, allow_nan=True)
        fh.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, naming the file in the error when it is corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt JSON ({exc}); delete the file to recompute it") from None


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_open(path) as fh:
        fh.write(text)


def write_csv(path: str | os.PathLike, frame: Any) -> None:
    """Write a pandas DataFrame as CSV (no index), atomically."""
    with atomic_open(path) as fh:
        frame.to_csv(fh, index=False)


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` atomically: an interrupted save leaves the previous checkpoint intact."""
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def code_version(repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """The git commit of the code and whether the tree had uncommitted changes ("unknown" outside git)."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}
