"""Atomic file writes: write to a temporary file in the same folder, then ``os.replace``.

A reader (or a resumed run) sees either the old file or the complete new one, never half of it. The new
file gets the permissions of a plain ``open`` (``0o666`` less the umask), not the private ``0o600`` of a
temporary file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_folder", "file_mode"]


def file_mode() -> int:
    """``0o666`` less this process's umask: the mode ``open`` gives a new file."""
    try:  # Linux reports the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_folder(folder: str | Path, fill: Callable[[Path], None]) -> None:
    """Build a folder beside ``folder`` with ``fill(path)``, then swap it in (a previous ``folder`` is removed after
    the swap), so a reader sees the old folder or the whole new one, never half of it."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex}"
    staging.mkdir()  # a plain mkdir, so the folder gets the usual permissions
    try:
        fill(staging)
        if folder.exists():
            old = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.old"
            os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
