"""Reading a case's file on the server: only inside the inbox, and only if it is still what was scored.

Every image and heatmap request reads the stored path again, so a replaced file (or a path swapped
for a symlink) would show another image beside the old score. `skinscreen.scoredfile` checks it
before anything is decoded, inside an inbox: `SKINSCREEN_INBOX` when set, else the inbox the batch
folder was found in (`<inbox>/<site>/...`).

A path that is missing, unreadable or outside the inbox gets one and the same answer, so a response
never tells whether some other path exists. A file whose content changed raises FileChangedError.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from skinscreen import scoredfile
from skinscreen.db.cases import CaseFile
from skinscreen.errors import FileChangedError, UnreadableImageError

UNAVAILABLE = "file unavailable"


def read_case_file(case: CaseFile, *, inboxes: Sequence[Path] = ()) -> bytes:
    """The file's bytes, checked against the boundary, the stored size and the stored sha256."""
    roots = scoredfile.roots_of(inboxes, case.folder, case.site)
    try:
        return scoredfile.read_scored(case.path, size=case.size, sha256=case.sha256, roots=roots)
    except FileChangedError:
        raise FileChangedError("file changed since it was scored") from None
    except UnreadableImageError as exc:  # one answer for all: a response never tells what exists
        raise UnreadableImageError(UNAVAILABLE) from exc
