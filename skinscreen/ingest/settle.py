"""Decide when a file is complete: a close-after-write, or size and mtime unchanged for a settle time."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLOSED_WAIT = 0.5


@dataclass
class _Watch:
    size: int
    mtime_ns: int
    stable_since: float
    closed: bool = False


@dataclass(frozen=True)
class Ready:
    """A complete file, with the size and mtime it was taken at."""

    path: Path
    size: int
    mtime_ns: int


class SettleTracker:
    """Tracks candidate paths until each is complete; `ready()` hands over the complete ones once."""

    def __init__(self, *, settle_seconds: float) -> None:
        self.settle_seconds = settle_seconds
        self._watches: dict[Path, _Watch] = {}

    def __len__(self) -> int:
        return len(self._watches)

    def touch(
        self, path: Path, *, closed: bool = False, stat: os.stat_result | None = None, by_mtime: bool = False
    ) -> None:
        """A path was created, modified, moved in, found by a scan or closed after writing.

        `stat`: the path's lstat, when the caller already has it. `by_mtime`: a file whose mtime is
        already `settle_seconds` old counts as settled from the start (a one-off scan of files
        written earlier, `--once`), since any write would have moved its mtime.
        """
        if stat is None:
            try:
                stat = os.stat(path, follow_symlinks=False)
            except OSError:
                self._watches.pop(path, None)
                return
        st = stat
        now = time.monotonic()
        old = self._watches.get(path)
        if old is None or (old.size, old.mtime_ns) != (st.st_size, st.st_mtime_ns):
            since = now
            if by_mtime and time.time_ns() - st.st_mtime_ns >= self.settle_seconds * 1e9:
                since = now - self.settle_seconds
            self._watches[path] = _Watch(st.st_size, st.st_mtime_ns, since, closed)
        elif closed:
            old.closed = True

    def ready(self) -> list[Ready]:
        """Complete files: unchanged since a close-after-write, or for `settle_seconds`."""
        now = time.monotonic()
        out = []
        for path, watch in list(self._watches.items()):
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                del self._watches[path]  # gone (renamed or deleted): its new name gets its own event
                continue
            if (st.st_size, st.st_mtime_ns) != (watch.size, watch.mtime_ns):
                self._watches[path] = _Watch(st.st_size, st.st_mtime_ns, now)
                continue
            # A close-after-write shortens the wait but does not skip it: some copiers reopen to append.
            wait = min(self.settle_seconds, CLOSED_WAIT) if watch.closed else self.settle_seconds
            if now - watch.stable_since >= wait:
                del self._watches[path]
                out.append(Ready(path, st.st_size, st.st_mtime_ns))
        return sorted(out, key=lambda r: str(r.path))
