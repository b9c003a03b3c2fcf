"""CSV exports of cases and verdicts, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Iterator
from io import StringIO
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
