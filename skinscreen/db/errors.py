"""Which database errors are worth a retry (transient) and which belong to the rows written (permanent).

Classified once, here, for every caller (the worker's retries, the batch writer's fallback):

- transient: the connection or the server is away, or the transaction lost a race; the same
  statement may succeed later. SQLSTATE classes 08 (connection), 40 (serialization failure,
  deadlock), 53 (insufficient resources), 57 (server shutting down or starting), 58 (system
  error), 55P03 and 55006 (lock not available, object in use); SQLAlchemy's `OperationalError`,
  `InterfaceError`, a connection it invalidated, and SQLite's "database is locked" or I/O errors.
- permanent: the data itself cannot be stored, and trying again writes the same data: class 22
  (value too long, invalid text representation, NUL in text, character not in repertoire...),
  class 23 (constraint violations), SQLAlchemy's `DataError` and `IntegrityError`, and a Python
  string the driver cannot encode (a lone surrogate). Such an error fails only the image it
  belongs to; the rest of the batch is stored.
- anything else (a missing table, a syntax error, a permission) is neither: it is the
  deployment's fault, not the file's, so it is raised as it is.

`describe` gives a log-safe summary (class name and SQLSTATE): a database's own message may quote
the values it refused (PostgreSQL's "Failing row contains ..."), and those are DICOM header values.
"""

from __future__ import annotations

import enum
import sqlite3

from sqlalchemy import exc as sa_exc

_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_STATES = frozenset({"55P03", "55006"})
_PERMANENT_CLASSES = ("22", "23")


class ErrorKind(enum.Enum):
    """How an error from the database should be handled."""

    transient = "transient"  # retry the same work later
    permanent = "permanent"  # the data cannot be stored: fail the image it belongs to
    other = "other"  # neither: raise it


def sqlstate(exc: BaseException) -> str | None:
    """The five-character SQLSTATE of a DBAPI error (PostgreSQL), when the driver gives one."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state if isinstance(state, str) and len(state) == 5 else None


def classify(exc: BaseException) -> ErrorKind:
    """Transient, permanent or other (see the module docstring)."""
    if isinstance(exc, UnicodeError):
        return ErrorKind.permanent
    state = sqlstate(exc)
    if state is not None:
        if state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_STATES:
            return ErrorKind.transient
        if state.startswith(_PERMANENT_CLASSES):
            return ErrorKind.permanent
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return ErrorKind.transient
    if isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError):
        return ErrorKind.permanent
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError):
        orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else None
        if isinstance(orig, sqlite3.OperationalError):
            return ErrorKind.transient if _sqlite_transient(str(orig)) else ErrorKind.other
        return ErrorKind.transient
    if isinstance(exc, sa_exc.StatementError) and isinstance(exc.orig, UnicodeError | ValueError | TypeError):
        return ErrorKind.permanent  # a value the type or the driver refused before sending
    return ErrorKind.other


def _sqlite_transient(message: str) -> bool:
    """SQLite reports a locked file, a full disk and a missing table all as OperationalError."""
    lowered = message.lower()
    return any(word in lowered for word in ("locked", "busy", "disk i/o", "unable to open", "full"))


def is_transient(exc: BaseException) -> bool:
    return classify(exc) is ErrorKind.transient


def is_permanent(exc: BaseException) -> bool:
    return classify(exc) is ErrorKind.permanent


def describe(exc: BaseException) -> str:
    """A log-safe name for the error: its class and SQLSTATE, never its message."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else None
    name = type(orig).__name__ if orig is not None else type(exc).__name__
    state = sqlstate(exc)
    return f"{name} (SQLSTATE {state})" if state else name
