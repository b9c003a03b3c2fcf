"""What a log line may say about a file: an id, or its name escaped and shortened.

File names come from the hospital's systems and may carry patient names; a newline in one would
forge a log line. Log lines carry image, batch and seen-file ids; where no id exists yet (a folder
that cannot be listed), `shown` gives the last path component escaped (no control characters, no
line breaks) and cut to a few characters.
"""

from __future__ import annotations

import logging
from pathlib import PurePath

SHOWN_CHARACTERS = 12


def shown(path: str | PurePath | None, *, limit: int = SHOWN_CHARACTERS) -> str:
    """The last component of `path`, escaped and at most `limit` characters, then '...' if cut."""
    if path is None:
        return "(unnamed)"
    name = PurePath(path).name or str(path)
    escaped = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name)
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


def silence(name: str) -> None:
    """Keep a library's logger (and its children) out of every log: for libraries whose messages
    quote header values (pydicom's, pynetdicom's data set codec). Its own handlers, if any, stay."""
    quiet = logging.getLogger(name)
    quiet.propagate = False
    quiet.setLevel(logging.CRITICAL + 1)
