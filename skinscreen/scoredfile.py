"""A scored file's bytes, read again: only inside the inbox, and only if they are still what was scored.

The review server shows a case's file and the DICOM sender builds results from it, both long after
it was scored, by its stored path: by then the path may be a symlink out of the inbox or hold another
patient's file. Before anything is decoded:

- the path, with every symlink resolved, must lie inside one of the inbox roots;
- it must be a regular file with the stored size and sha256, read from one open file descriptor
  (the final component opened without following a symlink). The bytes that were hashed are the
  bytes handed back, so no later swap can slip in.

Reasons name no path (they may be shown or stored): missing, outside the inbox, not a regular file,
changed (FileChangedError).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from skinscreen.errors import FileChangedError, UnreadableImageError

CHANGED = "the file changed since it was scored"
OUTSIDE = "the file (or a symlink on its path) leads outside the inbox"


def inbox_roots(folder: str | None, site: str | None) -> list[Path]:
    """The inbox a batch folder was found in (the folder above its site), or none."""
    if folder is None:
        return []
    path = Path(folder)
    if site == "(inbox)":
        return [path]
    for parent in (path, *path.parents):
        if parent.name == site:
            return [parent.parent]
    return []


def roots_of(inboxes: Sequence[Path], folder: str | None, site: str | None) -> list[Path]:
    """The inboxes a scored file must lie in: SKINSCREEN_INBOX when set, else its batch's inbox."""
    return list(inboxes) or inbox_roots(folder, site)


def inside(real: Path, roots: Sequence[Path]) -> bool:
    """Whether `real` (a resolved path) lies inside one of `roots` (each resolved here)."""
    return any(real.is_relative_to(os.path.realpath(root)) for root in roots)


def read_scored(path: str, *, size: int, sha256: str, roots: Sequence[Path]) -> bytes:
    """The file's bytes, checked against the inbox `roots`, the stored size and the stored sha256."""
    try:
        real = Path(os.path.realpath(path, strict=True))
    except (OSError, ValueError) as exc:
        raise UnreadableImageError("the file is missing") from exc
    if not inside(real, roots):
        raise UnreadableImageError(OUTSIDE)
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UnreadableImageError("not a regular file")
            if info.st_size != size:
                raise FileChangedError(CHANGED)
            data = fh.read(size + 1)
    except OSError as exc:
        raise UnreadableImageError(f"the file cannot be read ({exc.strerror or type(exc).__name__})") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise FileChangedError(CHANGED)
    return data
