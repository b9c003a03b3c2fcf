"""Reading a case's file on the server: only inside the inbox, and only if it is still what was scored.

Every image and heatmap request reads the stored path again, so a replaced file (or a path swapped
for a symlink) would show another image beside the old score. Before anything is decoded:

- the path, with every symlink resolved, must lie inside an inbox: `SKINSCREEN_INBOX` when set, else
  the inbox the batch folder was found in (`<inbox>/<site>/...`);
- it must be a regular file with the stored size and sha256, read from one open file descriptor
  (the final component opened without following a symlink). The bytes that were hashed are the
  bytes that get decoded, so no later swap can slip in.

A path that is missing, unreadable or outside the inbox gets one and the same answer, so a response
never tells whether some other path exists. A file whose content changed raises FileChangedError.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from skinscreen.db.cases import CaseFile
from skinscreen.errors import FileChangedError, UnreadableImageError

UNAVAILABLE = "file unavailable"


def inbox_roots(case: CaseFile) -> list[Path]:
    """The inbox a case's batch folder was found in (the folder above its site), or none."""
    return case.inbox_roots()


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(Path(os.path.realpath(root)))
    except ValueError:
        return False
    return True


def read_case_file(case: CaseFile, *, inboxes: Sequence[Path] = ()) -> bytes:
    """The file's bytes, checked against the boundary, the stored size and the stored sha256."""
    roots = list(inboxes) or inbox_roots(case)
    try:
        real = Path(os.path.realpath(case.path, strict=True))
    except (OSError, ValueError) as exc:
        raise UnreadableImageError(UNAVAILABLE) from exc
    if not any(_inside(real, root) for root in roots):
        raise UnreadableImageError(UNAVAILABLE)
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UnreadableImageError(UNAVAILABLE)
            if info.st_size != case.size:
                raise FileChangedError("file changed since it was scored")
            data = fh.read(case.size + 1)
    except OSError as exc:
        raise UnreadableImageError(UNAVAILABLE) from exc
    if hashlib.sha256(data).hexdigest() != case.sha256:
        raise FileChangedError("file changed since it was scored")
    return data
