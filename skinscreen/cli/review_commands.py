"""Review commands: serve (the review API and page), users, reviews export."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from skinscreen.config import Settings

logger = logging.getLogger(__name__)


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, envvar="SKINSCREEN_HOST", help="Address to bind."
)
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), envvar="SKINSCREEN_PORT"
)
@click.option("--model", help="Model name or directory for heatmaps (default: the shipped model).")
@click.option(
    "--migrate",
    is_flag=True,
    help="Run the database migrations first (needs the tables' owner; by default `serve` only checks).",
)
@click.pass_obj
def serve(settings: Settings, host: str, port: int, model: str | None, migrate: bool) -> None:
    """Serve the review API (OpenAPI at /openapi.json) and the review page; needs SKINSCREEN_SECRET_KEY.

    The database must be at the current schema: run `skinscreen db upgrade` as the database owner
    first (or pass --migrate), so that `serve` itself can run as a role that owns no table.
    """
    # TensorFlow (loaded for the first heatmap) prints start-up noise from C++ unless told not to.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import uvicorn

    from skinscreen.db import migrate as migrations
    from skinscreen.review import create_app

    if settings.secret_key is None:
        raise click.UsageError("set SKINSCREEN_SECRET_KEY to 32+ random characters to sign session cookies")
    if model:
        settings = settings.model_copy(update={"model": model})
    if migrate:
        migrations.upgrade(settings.database_url)
    current, head = migrations.current(settings.database_url), migrations.head(settings.database_url)
    if current != head:
        raise click.ClickException(
            f"the database is at schema revision {current or 'none'}, not {head}: run "
            "`skinscreen db upgrade` as the database owner (or `serve --migrate`)"
        )
    app = create_app(settings)
    logger.info("review server on http://%s:%d", host, port)
    uvicorn.run(app, host=host, port=port, log_config=None, proxy_headers=True)


@click.group()
def users() -> None:
    """Accounts of the review page and API."""


@users.command("add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(["reviewer", "admin", "sender"]), default="reviewer", show_default=True
)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.pass_obj
def add_user(settings: Settings, name: str, role: str, password_stdin: bool) -> None:
    """Create an account NAME (the password is asked twice, or read with --password-stdin).

    A `sender` account is a hospital system that sends DICOM instances to /dicom-web/studies: it
    has no password (get its token with `skinscreen users token NAME`) and its name is its site.
    """
    import secrets

    from sqlalchemy.exc import IntegrityError

    from skinscreen.db import accounts, migrate
    from skinscreen.db.audit import Action, record
    from skinscreen.db.session import make_engine, make_session_factory, session_scope
    from skinscreen.db.tables import Role
    from skinscreen.review.passwords import WeakPasswordError, hash_password, valid_name

    if not valid_name(name):
        raise click.BadParameter("letters, digits and . _ @ - only, up to 100 characters", param_hint="NAME")
    if role == "sender":  # signs in with tokens only: a password nobody knows
        password = secrets.token_urlsafe(32)
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        password_hash = hash_password(password)
    except WeakPasswordError as exc:
        raise click.UsageError(str(exc)) from exc
    migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            account = accounts.add_account(session, name=name, role=Role(role), password_hash=password_hash)
            account_id = account.id
            detail = f"cli: account {account_id} {role}"
            record(session, account_id=None, action=Action.account_added, detail=detail)
    except IntegrityError as exc:
        raise click.ClickException(f"an account named {name!r} exists") from exc
    finally:
        engine.dispose()
    click.echo(f"account {account_id} ({role}) created")


@users.command("token")
@click.argument("name")
@click.option(
    "--days", type=click.FloatRange(min=0, min_open=True), default=365.0, show_default=True, help="Validity."
)
@click.pass_obj
def new_token(settings: Settings, name: str, days: float) -> None:
    """Print a new API token for the active account NAME (e.g. a sender's, for STOW-RS); only its
    hash is kept, so it cannot be shown again."""
    from datetime import timedelta

    from skinscreen.db import accounts, tokens
    from skinscreen.db.audit import Action, record
    from skinscreen.db.session import make_engine, make_session_factory, session_scope
    from skinscreen.db.tables import utcnow
    from skinscreen.review.passwords import hash_token
    from skinscreen.review.passwords import new_token as make_token

    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            account = accounts.account_named(session, name)
            if account is None or not account.active:
                raise click.ClickException(f"no active account named {name!r}")
            token = make_token()
            expires = utcnow() + timedelta(days=days)
            tokens.add_token(session, token_hash=hash_token(token), account_id=account.id, expires_at=expires)
            record(session, account_id=None, action=Action.token_issued, detail=f"cli: account {account.id}")
    finally:
        engine.dispose()
    click.echo(token)


@users.command("list")
@click.pass_obj
def list_users(settings: Settings) -> None:
    """List accounts: name, role, active, created."""
    from skinscreen.cli.base import write_rows
    from skinscreen.db import accounts
    from skinscreen.db.session import make_engine, make_session_factory, session_scope

    engine = make_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        rows = [
            {"id": a.id, "name": a.name, "role": a.role.value, "active": a.active, "created": a.created_at}
            for a in accounts.list_accounts(session)
        ]
    engine.dispose()
    write_rows(rows, fmt="table", columns=["id", "name", "role", "active", "created"])


@click.group()
def reviews() -> None:
    """Reviewers' verdicts."""


@reviews.command("export")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
@click.pass_obj
def export_reviews(settings: Settings, output: Path | None) -> None:
    """Write every verdict as CSV, oldest first, with the case's score and identifiers."""
    from skinscreen.db.audit import Action, record
    from skinscreen.db.session import make_engine, make_session_factory, session_scope
    from skinscreen.db.verdicts import all_reviews
    from skinscreen.review.exports import REVIEW_COLUMNS, csv_chunks

    engine = make_engine(settings.database_url)
    with contextlib.ExitStack() as stack:
        session = stack.enter_context(session_scope(make_session_factory(engine)))
        out = stack.enter_context(_private_file(output)) if output else sys.stdout
        record(session, account_id=None, action=Action.export, detail="cli: reviews export")
        for chunk in csv_chunks(all_reviews(session), columns=REVIEW_COLUMNS):
            out.write(chunk)
    engine.dispose()


def _private_file(path: Path) -> contextlib.closing[Any]:
    """`path` opened for writing, readable by its owner only (0600, also when it existed before)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.fchmod(fd, 0o600)
    return contextlib.closing(os.fdopen(fd, "w", encoding="utf-8"))


COMMANDS = [serve, users, reviews]
