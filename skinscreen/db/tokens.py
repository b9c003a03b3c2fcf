"""API bearer tokens: only their SHA-256 is stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from skinscreen.db.tables import Account, ApiToken, utcnow


def add_token(session: Session, *, token_hash: str, account_id: int, expires_at: datetime) -> None:
    session.add(
        ApiToken(token_hash=token_hash, account_id=account_id, expires_at=expires_at, created_at=utcnow())
    )


def delete_token(session: Session, token_hash: str) -> None:
    session.execute(delete(ApiToken).where(ApiToken.token_hash == token_hash))


def account_for_token(session: Session, token_hash: str) -> Account | None:
    """The active account holding this unexpired token."""
    stmt = (
        select(Account)
        .join(ApiToken, ApiToken.account_id == Account.id)
        .where(ApiToken.token_hash == token_hash, ApiToken.expires_at > utcnow(), Account.active.is_(True))
    )
    return session.execute(stmt).scalar_one_or_none()
