"""Query commands: cases and status."""

from __future__ import annotations

import itertools
import json
from datetime import datetime

import click

from skinscreen.cli.base import FORMAT, write_rows
from skinscreen.config import Settings
from skinscreen.ingest.enqueue import queue_depth

CLI_CASE_COLUMNS = ["id", "path", "sha256", "state", "probability", "flagged", "model_version", "reason"]
"""Columns of `cases --format csv` (JSON carries every field); the id is the one the API and page use."""
CLI_TABLE_COLUMNS = ["id", "state", "probability", "flagged", "reason", "path"]


@click.command()
@click.option("--flagged/--not-flagged", default=None, help="Only flagged (or only unflagged) cases.")
@click.option(
    "--state",
    type=click.Choice(["queued", "scored", "failed", "superseded"]),
    help="Only images in this state.",
)
@click.option("--since", type=click.DateTime(), help="Only images registered since this date (UTC).")
@click.option("--limit", type=int, help="At most this many rows.")
@FORMAT
@click.pass_obj
def cases(
    settings: Settings,
    flagged: bool | None,
    state: str | None,
    since: datetime | None,
    limit: int | None,
    fmt: str,
) -> None:
    """List cases, highest probability first."""
    from skinscreen.db.cases import CaseFilter, iter_cases
    from skinscreen.db.readiness import reading_engine
    from skinscreen.db.session import make_session_factory, session_scope
    from skinscreen.db.tables import State

    filters = CaseFilter(flagged=flagged, state=State(state) if state else None, since=since)
    engine = reading_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        # Admins' command line: audit cases keep their scores (the review workspace hides them).
        rows = list(itertools.islice(iter_cases(session, filters, blind=False), limit))
    engine.dispose()
    columns = CLI_CASE_COLUMNS if fmt != "table" else CLI_TABLE_COLUMNS
    write_rows(rows, fmt=fmt, columns=columns)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def status(settings: Settings, fmt: str) -> None:
    """Counts by state, queue depth, recent throughput, failures by reason and drift warnings per batch.

    Only reads: drift is judged against the model in force, its warnings recorded when batches were scored.
    """
    from skinscreen.db import queries
    from skinscreen.db.exports import counts as export_counts
    from skinscreen.db.readiness import reading_engine
    from skinscreen.db.session import make_session_factory, session_scope
    from skinscreen.sites.report import drift_report

    engine = reading_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        report = queries.status(session)
        report.update(drift_report(session, settings=settings))
        report["dicom_exports"] = export_counts(session)
    engine.dispose()
    report["queue_depth"] = queue_depth(settings.broker_url)
    if fmt == "json":
        click.echo(json.dumps(report, indent=1))
        return
    click.echo(f"images          {report['images']}")
    for state, count in report["by_state"].items():
        click.echo(f"  {state:<13} {count}")
    click.echo(f"flagged         {report['flagged']}")
    depth = report["queue_depth"]
    click.echo(f"queue depth     {depth if depth is not None else 'unknown (broker unreachable)'}")
    rate = report["throughput_per_second"]
    click.echo(
        f"throughput      {rate if rate is not None else '-'} img/s over {report['busy_seconds']:g} s busy "
        f"in the last {report['window_seconds'] // 60} min ({report['scored_last_window']} images scored)"
    )
    for reason, count in report["failures_by_reason"].items():
        click.echo(f"  failed: {count} x {reason}")
    exports = report["dicom_exports"]
    if any(exports.values()):
        click.echo("DICOM results    " + ", ".join(f"{n} {state}" for state, n in exports.items()))
    for reason, count in report["refused_files"].items():
        click.echo(f"  refused: {count} x {reason}")
    if report.get("drift_note"):
        click.echo(f"drift           not checked: {report['drift_note']}")
    for entry in report["drift"]:
        if entry["warning"]:
            click.echo(
                f"  DRIFT site {entry['site']}, batch {entry['batch']} ({entry['n']} cases): "
                f"{entry['warning']}"
            )


COMMANDS = [cases, status]
