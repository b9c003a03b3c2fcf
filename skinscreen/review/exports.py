"""CSV exports of cases and verdicts, safe to open in a spreadsheet.

Reviewers' exports name a case's file from its site folder on (`siteA/2026-11-27/a1.jpg`), never by
the server's full path: how the server's disks are laid out is not theirs to know.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Iterator
from io import StringIO
from pathlib import PurePath
from typing import Any

logger = logging.getLogger(__name__)

CASE_COLUMNS = [
    "id",
    "batch_id",
    "site",
    "state",
    "reason",
    "probability",
    "flagged",
    "threshold",
    "model_version",
    "reviews",
    "created_at",
    "study_uid",
    "sop_uid",
    "sha256",
    "path",
]
REVIEW_COLUMNS = [
    "review_id",
    "image_id",
    "verdict",
    "note",
    "reviewer",
    "reviewed_at",
    "probability",
    "flagged",
    "model_version",
    "study_uid",
    "sop_uid",
    "sha256",
    "path",
]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """Dates as ISO text; text a spreadsheet would run as a formula gets a leading quote."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def inbox_relative(path: str, site: str | None) -> str:
    """The path from its site folder on, or its file name when no folder is named like the site."""
    parts = PurePath(path).parts
    folders = list(parts[:-1])
    if site and site in folders:
        start = len(folders) - 1 - folders[::-1].index(site)
        return "/".join(parts[start:])
    return PurePath(path).name


def for_reviewers(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The rows with each path made relative to the inbox (`inbox_relative`)."""
    for row in rows:
        yield {**row, "path": inbox_relative(str(row.get("path") or ""), row.get("site"))}


def csv_chunks(rows: Iterable[dict[str, Any]], *, columns: list[str], every: int = 200) -> Iterator[str]:
    """The header and rows as CSV text, a few hundred rows per chunk (for streaming)."""
    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for n, row in enumerate(rows, start=1):
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
        if n % every == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
