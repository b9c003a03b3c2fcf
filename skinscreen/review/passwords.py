"""Password hashes (argon2id) and API tokens (random, stored as SHA-256): no web framework here."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"
"""Account names: letters, digits and . _ @ -, up to 100 characters."""

MAX_CONCURRENT_HASHES = 1
"""argon2 computations run at once (each about 0.7 s of CPU on several threads): other requests keep CPU."""
HASH_WAIT = 2.0
"""Seconds a sign-in waits for an argon2 slot before it is answered 429."""

_hasher = PasswordHasher()
_slots = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)
# Verified when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class WeakPasswordError(ValueError):
    """Raised when a new password is too short or too long."""


class HashingBusyError(Exception):
    """Raised when every argon2 slot stayed busy for HASH_WAIT seconds."""


@contextmanager
def _hashing_slot() -> Iterator[None]:
    if not _slots.acquire(timeout=HASH_WAIT):
        raise HashingBusyError("too many passwords being checked at once")
    try:
        yield
    finally:
        _slots.release()


def valid_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None


def hash_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(f"a password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")
    with _hashing_slot():
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (unknown account) it still spends the same time."""
    with _hashing_slot():
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database keeps of a token: its SHA-256 (the token is random, so no salt is needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
