"""How a DICOM header value is written to the image table: escaped where it must be, cut only visibly.

The identifiers and context kept from a DICOM file (`DicomInfo`) are stored as the file says them,
with two documented exceptions:

- Characters a text column cannot hold or a reader should not be sent raw (NUL and other control
  characters, a lone surrogate) are written as Python escapes (`\\x00`, `\\x1b`, `\\ud800`).
- A value longer than its column (256 characters for the UIDs and the body site, 64 for the
  acquisition date; the standard allows 64 for a UID and 26 for a date) keeps its beginning and
  ends with `...[truncated, N characters]`, N being the length the file gave. A value is never cut
  without that mark, so a stored UID that does not end with it is the file's UID in full.

SQLite does not enforce column lengths; the same rule is applied there so both databases hold the
same text.
"""

from __future__ import annotations

from collections.abc import Mapping

from skinscreen.db.tables import Base, Image

DICOM_COLUMNS = ("study_uid", "series_uid", "sop_uid", "sop_class_uid", "body_site", "acquisition_date")


def column_width(table: type[Base], name: str) -> int:
    """The declared length of a String(n) column."""
    length = getattr(table.__table__.c[name].type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"{table.__tablename__}.{name} has no declared length")
    return length


def escaped(value: str) -> str:
    """Control characters and lone surrogates as escapes; everything printable as it is."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value)


def fitted(value: str, width: int) -> str:
    """`value` escaped, and cut with a visible mark if it is longer than `width`."""
    text = escaped(value)
    if len(text) <= width:
        return text
    mark = f"...[truncated, {len(text)} characters]"
    return text[: width - len(mark)] + mark


def dicom_values(dicom: Mapping[str, str | None]) -> dict[str, str | None]:
    """The image-table columns for a DICOM's kept identifiers, each fitted to its column."""
    return {
        key: None if value is None else fitted(str(value), column_width(Image, key))
        for key, value in dicom.items()
        if key in DICOM_COLUMNS
    }
