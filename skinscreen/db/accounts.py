"""Accounts of the review page and API: added, changed and deactivated, never deleted."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from skinscreen.db.tables import Account, ApiToken, Role, utcnow


def add_account(session: Session, *, name: str, role: Role, password_hash: str) -> Account:
    account = Account(name=name, role=role, password_hash=password_hash, active=True, created_at=utcnow())
    session.add(account)
    session.flush()
    return account


def account_named(session: Session, name: str) -> Account | None:
    return session.execute(select(Account).where(Account.name == name)).scalar_one_or_none()


def list_accounts(session: Session) -> list[Account]:
    return list(session.execute(select(Account).order_by(Account.name)).scalars())


def set_password_hash(session: Session, *, account_id: int, password_hash: str) -> None:
    session.execute(update(Account).where(Account.id == account_id).values(password_hash=password_hash))


def end_sessions(session: Session, account_id: int) -> None:
    """End every page session (raise the generation their cookies carry) and API token of an account."""
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(session_generation=Account.session_generation + 1)
    )
    session.execute(delete(ApiToken).where(ApiToken.account_id == account_id))
    session.expire_all()


def other_active_admins(session: Session, account_id: int) -> int:
    """How many active admins there are besides `account_id`.

    Locks the active admins' rows (FOR UPDATE, in id order, on PostgreSQL) until the transaction ends:
    two admins deactivating each other at once are then decided one after the other, and the second
    sees that the first left it the last admin.
    """
    stmt = (
        select(Account.id)
        .where(Account.role == Role.admin, Account.active.is_(True))
        .order_by(Account.id)
        .with_for_update()
    )
    return sum(1 for found in session.execute(stmt).scalars() if found != account_id)
