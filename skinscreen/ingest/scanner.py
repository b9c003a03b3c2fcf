"""Which paths in an inbox are candidates, and where a file belongs (site and batch folder)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from skinscreen.logsafe import shown

logger = logging.getLogger(__name__)

TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".filepart", ".swp", ".download")


def is_temporary(path: Path) -> bool:
    """Dot-files, `~` files and names still being copied (`*.part`, `*.tmp`...) wait until renamed."""
    name = path.name
    return name.startswith((".", "~")) or name.lower().endswith(TEMP_SUFFIXES)


def in_hidden_folder(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts[:-1]
    except ValueError:
        return False
    return any(part.startswith(".") for part in parts)


@dataclass(frozen=True)
class Placement:
    """Where a file sits: `inbox/<site>/<batch...>/file`."""

    site: str
    folder: str


def placement(path: Path, root: Path) -> Placement:
    """Site is the first folder under the inbox; the batch is the file's folder."""
    rel = path.relative_to(root)
    parent = rel.parent
    site = rel.parts[0] if len(rel.parts) > 1 else "(inbox)"
    folder = str(root / parent) if str(parent) != "." else str(root)
    return Placement(site=site, folder=folder)


def outside_inbox(path: Path, root: Path) -> bool:
    """True for a symlink (or a path through one) that resolves outside the inbox."""
    try:
        path.resolve(strict=True).relative_to(root.resolve())
    except (ValueError, OSError):
        return True
    return False


def walk(root: Path) -> Iterator[Path]:
    """Every non-temporary file (or symlink) under `root`, skipping hidden folders; sorted per folder."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_log_walk_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not is_temporary(path):
                yield path


def _log_walk_error(exc: OSError) -> None:
    logger.warning("cannot list a folder (%s): %s", shown(exc.filename), exc.strerror)
