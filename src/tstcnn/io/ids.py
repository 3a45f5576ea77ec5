"""Names that become file names: checked where they enter, so that no path is ever built from a bad one.

A video id names a folder (``STORE/videos/<id>``); an id such as ``..``, ``/abs`` or ``a/../../b`` would make
readers and writers touch paths outside the store. :func:`check_id` refuses such names with a one-line message;
:func:`inside` is the last guard before a path is written or removed.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

__all__ = ["MAX_ID_BYTES", "check_id", "inside"]

MAX_ID_BYTES = 200  # a file name holds 255 bytes; temporary names add ".<id>.<8 hex>.tmp" around the id


def check_id(text: object, what: str = "video id") -> str:
    """Return ``text`` if it can name a folder on its own, else raise ValueError saying why in one line.

    An id is a non-empty string of at most ``MAX_ID_BYTES`` bytes as a file name, not starting with ``.``
    (``.``/``..`` are folders and dot names are the store's temporary folders), without ``/``, ``\\``, NUL or
    other control characters.
    """
    if not isinstance(text, str):
        raise ValueError(f"{what} {text!r} is not a string")
    if not text:
        raise ValueError(f"{what} is empty")
    if text.startswith("."):
        raise ValueError(f"{what} {text!r} starts with '.' (reserved for temporary folders); rename the file")
    if "/" in text or "\\" in text:
        raise ValueError(f"{what} {text!r} holds a path separator")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ValueError(f"{what} {text!r} holds a control character")
    try:
        size = len(os.fsencode(text))
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r} cannot be a file name on this system") from None
    if size > MAX_ID_BYTES:
        raise ValueError(f"{what} {text[:40]!r}… is {size} bytes long; at most {MAX_ID_BYTES} are allowed")
    return text


def inside(root: str | Path, path: str | Path) -> Path:
    """``path`` with links resolved, if it lies strictly below ``root`` (links resolved); else ValueError.

    The root itself is not inside: removing ``root/.`` would remove everything below it.
    """
    base, target = Path(root).resolve(), Path(path).resolve()
    if target == base or not target.is_relative_to(base):
        raise ValueError(f"{path} is not inside {root}: refusing to write or remove it")
    return target
