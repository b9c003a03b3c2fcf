"""The database: tables, sessions, queries and migrations (no TensorFlow here)."""

from __future__ import annotations

from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Base, Batch, Image, Prediction, SeenFile, State

__all__ = [
    "Base",
    "Batch",
    "Image",
    "Prediction",
    "SeenFile",
    "State",
    "make_engine",
    "make_session_factory",
    "session_scope",
]
