"""A lock on a folder, so that two commands never write into the same store or run folder at once.

The lock is ``fcntl.flock`` on a file in the folder (``.lock``), which holds one JSON line ``{pid, command}`` per
holder for the message the next one gets. The kernel releases it when its holder dies, however it dies, so the
file a killed process leaves behind never blocks anyone. An exclusive holder excludes everyone; shared holders
(shards of one ``prepare`` writing disjoint videos) exclude only exclusive ones. POSIX only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_FILE", "folder_lock"]

LOCK_FILE = ".lock"
_UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}  # file systems mounted without locks (some NFS, Lustre)

logger = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _holder(fd: int) -> str:
    """The command and pid of a live holder named in the lock file, or a vaguer phrase when none is named."""
    try:
        lines = os.pread(fd, 1 << 16, 0).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return "another process"
    holders = []
    for line in lines:
        try:
            info = json.loads(line)
            holders.append((int(info["pid"]), str(info["command"])))
        except (ValueError, KeyError, TypeError):
            continue
    live = [h for h in holders if _alive(h[0])]  # shared holders that were killed leave their line behind
    if not live:
        return "another process"
    pid, command = live[0]
    return f"`{command}` (pid {pid})"


def _acquire(path: Path, folder: Path, mode: int) -> int | None:
    """An open descriptor of ``path`` locked in ``mode`` (None where the file system has no locks)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ValueError(f"{folder} is in use by {holder}; wait for it to finish or choose another folder"
                             ) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in _UNSUPPORTED:
                raise
            logger.warning("%s: this file system has no file locks (%s); make sure no other command writes there "
                           "at the same time", folder, exc.strerror)
            return None
        except BaseException:
            os.close(fd)
            raise
        # A holder that was releasing removed the file after we opened it: our lock is on a file nobody else sees.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str, *, shared: bool = False, name: str = LOCK_FILE) -> Iterator[Path]:
    """Hold a lock on ``folder`` (created if missing) for the ``with`` block; yields the lock file's path.

    Args:
        command: what the holder is doing, as the user typed it (named in the message others get).
        shared: hold it with others that are shared too (writers of disjoint parts), excluding exclusive ones.
        name: the lock file's name, for locks on parts of a folder.

    Raises:
        ValueError: another process (or another ``folder_lock`` in this one) holds it; the message names its
            command and pid.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd = _acquire(path, folder, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    if fd is None:
        yield path
        return
    try:
        yield from _held(fd, path, command, shared)
    finally:
        if created:  # a command that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()


def _held(fd: int, path: Path, command: str, shared: bool) -> Iterator[Path]:
    """Write the holder's line into the lock file, yield, then release (removing the file if last)."""
    line = (json.dumps({"pid": os.getpid(), "command": command}) + "\n").encode("utf-8")
    try:
        if shared:
            with open(path, "ab") as handle:  # one append is atomic: other shared holders add theirs alike
                handle.write(line)
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, line, 0)
        yield path
    finally:
        try:
            # The last holder removes the file while still holding it, so that an opener that was waiting on
            # this file sees it change and retries on a fresh one; a shared holder is last if it can go exclusive.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
        except OSError:
            pass
        finally:
            os.close(fd)
