"""Pipeline commands: run (embedded), ingest, worker, sweep, requeue, db."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import click

from skinscreen.cli import db_commands
from skinscreen.cli.base import QUIET, RET_CONNECT
from skinscreen.config import Settings
from skinscreen.tasknames import QUEUE

INBOX = click.argument("inbox", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
MODEL = click.option(
    "--model", help="Model name or directory until a version is promoted (default: the shipped model)."
)
BATCH = click.option("--batch-size", type=int, help="Images per model call (default 32).")


def with_options(settings: Settings, **values: object) -> Settings:
    """A copy of the settings with the options the user gave."""
    given = {k: v for k, v in values.items() if v is not None and v != ()}
    return settings.model_copy(update=given) if given else settings


def _inboxes(settings: Settings, inbox: tuple[Path, ...]) -> list[Path]:
    roots = list(inbox) or list(settings.inbox)
    if not roots:
        raise click.UsageError("give an INBOX folder or set SKINSCREEN_INBOX")
    return roots


@click.command()
@INBOX
@click.option("--once", is_flag=True, help="Score what is in the inbox now, print a summary and exit.")
@MODEL
@BATCH
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Summary format.")
@click.pass_obj
def run(
    settings: Settings,
    inbox: tuple[Path, ...],
    once: bool,
    model: str | None,
    batch_size: int | None,
    fmt: str,
) -> None:
    """Watch INBOX and score in this process (SQLite by default; no Redis needed)."""
    from skinscreen.runner import run_embedded

    settings = with_options(settings, model=model, batch_size=batch_size)
    if logging.getLogger().level >= logging.INFO:
        # The progress bar and the summary say it all; per-file and per-batch lines come with -v.
        for name in ("skinscreen.ingest", "skinscreen.worker"):
            logging.getLogger(name).setLevel(logging.WARNING)
    quiet = bool(click.get_current_context().meta.get(QUIET))
    roots = _inboxes(settings, inbox)
    summary = run_embedded(roots, settings=settings, once=once, progress=not quiet).as_dict()
    if fmt == "json":
        click.echo(json.dumps(summary, indent=1))
        return
    click.echo(f"model            {summary['model_version']}")
    for key in ("files_seen", "new_images", "duplicates", "refused", "scored", "flagged", "failed"):
        click.echo(f"{key.replace('_', ' '):<16} {summary[key]}")
    for reason, count in summary["failed_by_reason"].items():
        click.echo(f"  failed: {count} x {reason}")


@click.command()
@INBOX
@click.option("--poll", is_flag=True, help="Poll the folders (network shares, where inotify sees nothing).")
@click.option("--once", is_flag=True, help="Take what is there now, enqueue it and exit.")
@BATCH
@click.pass_obj
def ingest(
    settings: Settings, inbox: tuple[Path, ...], poll: bool, once: bool, batch_size: int | None
) -> None:
    """Watch INBOX folders, register complete files and enqueue batches for the workers."""
    from skinscreen import metrics
    from skinscreen.db import migrate
    from skinscreen.db.session import make_engine, make_session_factory
    from skinscreen.heartbeat import orphan_taker
    from skinscreen.ingest import Dispatcher, Ingester, celery_sender
    from skinscreen.ingest.enqueue import queue_depth

    settings = with_options(settings, batch_size=batch_size)
    migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    dispatcher = Dispatcher(
        settings=settings,
        sessions=sessions,
        send=celery_sender(settings),
        backlog=lambda: queue_depth(settings.broker_url),
        orphans=orphan_taker(settings.broker_url),
    )
    ingester = Ingester(
        _inboxes(settings, inbox), settings=settings, sessions=sessions, dispatcher=dispatcher, poll=poll
    )
    metrics.serve_metrics(
        settings,
        role="ingest",
        collectors=[
            metrics.CallbackCollector(metrics.queue_depth_reading(settings)),
            metrics.CallbackCollector(metrics.ingester_reading(ingester.counts.files), counter=True),
        ],
    )
    try:
        ingester.run(once=once)
    except KeyboardInterrupt:
        ingester.stop()
    finally:
        engine.dispose()
    click.echo(json.dumps(ingester.counts.files()))


@click.command()
@click.option(
    "--concurrency",
    "-c",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes on this machine (one per GPU; on CPU, threads are split between them).",
)
@click.option("--pool", type=click.Choice(["prefork", "solo"]), default="prefork", show_default=True)
@click.option("--loglevel", default="INFO", show_default=True)
@click.option(
    "-n", "--hostname", help="Node name, for several workers on one host (Celery's %h is the host)."
)
@click.pass_obj
def worker(settings: Settings, concurrency: int, pool: str, loglevel: str, hostname: str | None) -> None:
    """Run a Celery worker that scores batches (model loaded per process after the fork, then the promoted
    version taken up between batches)."""
    import os

    if settings.metrics_port is not None and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        # Before prometheus_client is imported: the pool's children share their counters through files.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="skinscreen-metrics-")
    import warnings

    from celery.exceptions import SecurityWarning

    from skinscreen import metrics
    from skinscreen.models.classifier import default_threads
    from skinscreen.worker.app import make_celery

    # Celery's eight-line warning for a worker run as root is about pickle, which this app never
    # accepts (JSON only, worker/app.py); the container image runs the worker as its own user.
    warnings.filterwarnings("ignore", category=SecurityWarning)

    if settings.threads is None:
        # Processes x threads <= cores; the pool's children inherit these settings through the fork.
        settings = settings.model_copy(update={"threads": max(1, default_threads() // concurrency)})
    app = make_celery(settings)
    metrics.serve_metrics(
        settings, role="worker", collectors=[metrics.CallbackCollector(metrics.queue_depth_reading(settings))]
    )
    extra = [f"--hostname={hostname}"] if hostname else []
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            "-Q",
            QUEUE,
            *extra,
        ]
    )


@click.command()
@click.option(
    "--older-than", type=float, help="Seconds an image may stay queued (default: SKINSCREEN_SWEEP_AFTER)."
)
@click.pass_obj
def sweep(settings: Settings, older_than: float | None) -> None:
    """Enqueue again the images of dead workers and those left queued too long (a lost message)."""
    from skinscreen.db.session import make_engine, make_session_factory
    from skinscreen.heartbeat import orphan_taker
    from skinscreen.ingest import Dispatcher, celery_sender

    engine = make_engine(settings.database_url)
    dispatcher = Dispatcher(
        settings=settings,
        sessions=make_session_factory(engine),
        send=celery_sender(settings),
        orphans=orphan_taker(settings.broker_url),
    )
    count = dispatcher.resend_orphans()
    count += dispatcher.sweep(older_than=timedelta(seconds=older_than) if older_than is not None else None)
    engine.dispose()
    click.echo(f"re-enqueued {count} images")


@click.command()
@click.option("--reason", help="Only failures with exactly this reason.")
@click.option("--enqueue/--no-enqueue", default=True, help="Send them to the workers now (needs the broker).")
@click.pass_obj
def requeue(settings: Settings, reason: str | None, enqueue: bool) -> None:
    """Put failed images back in the queue (after fixing their cause)."""
    from skinscreen.db import queries
    from skinscreen.db.audit import Action, record
    from skinscreen.db.session import make_engine, make_session_factory, session_scope
    from skinscreen.db.tables import State
    from skinscreen.ingest import Dispatcher, celery_sender

    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        ids = queries.requeue(session, state=State.failed, reason=reason)
        record(session, account_id=None, action=Action.requeue, detail=f"cli: {len(ids)} images")
    if enqueue and ids:
        Dispatcher(settings=settings, sessions=sessions, send=celery_sender(settings)).send_unsent()
    engine.dispose()
    click.echo(f"requeued {len(ids)} images")


@click.group()
def db() -> None:
    """Database schema, backup and restore commands."""


@db.command()
@click.pass_obj
def upgrade(settings: Settings) -> None:
    """Create or migrate the tables (Alembic) at SKINSCREEN_DATABASE_URL; put back missing guards."""
    from sqlalchemy.exc import OperationalError

    from skinscreen.db import migrate

    try:
        installed = migrate.upgrade(settings.database_url)
    except OperationalError as exc:
        click.echo(f"error: cannot reach the database: {exc.orig}", err=True)
        raise SystemExit(RET_CONNECT) from exc
    if installed:
        click.echo(f"database guards installed: {', '.join(installed)}")
    click.echo(f"database at revision {migrate.current(settings.database_url)}")


for _command in db_commands.COMMANDS:  # backup, restore
    db.add_command(_command)

COMMANDS = [run, ingest, worker, sweep, requeue, db]
