"""Operations commands: models (list, add, compare, promote, rollback, history), rescore, purge."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session, sessionmaker

from skinscreen.cli.base import write_rows
from skinscreen.config import Settings

logger = logging.getLogger(__name__)

TEXT_OR_JSON = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)


@contextmanager
def _sessions(settings: Settings, *, migrate_first: bool = False) -> Iterator[sessionmaker[Session]]:
    from skinscreen.db import migrate
    from skinscreen.db.session import make_engine, make_session_factory

    if migrate_first:
        migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _echo_json(value: dict[str, Any]) -> None:
    click.echo(json.dumps(value, indent=1, default=str))


@click.group(invoke_without_command=True)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.pass_context
def models(ctx: click.Context, fmt: str) -> None:
    """List the models this deployment has (shipped and installed), or manage them."""
    if ctx.invoked_subcommand is not None:
        return
    from skinscreen.models.registry import list_models

    settings: Settings = ctx.obj
    rows = [m.summary() for m in list_models(settings.models_folder())]
    columns = ["version", "source", "threshold", "views", "test_auc", "test_sensitivity", "test_specificity"]
    write_rows(
        rows, fmt=fmt, columns=columns if fmt == "table" else [*columns, "input_size", "test_images", "path"]
    )


@models.command("add")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_obj
def models_add(settings: Settings, model_dir: Path) -> None:
    """Install an exported model (its card and every file's sha256 checked) into SKINSCREEN_MODELS_DIR."""
    from skinscreen.db.audit import Action, record
    from skinscreen.db.session import session_scope
    from skinscreen.models.registry import install_model

    installed = install_model(model_dir, settings.models_folder())
    with _sessions(settings, migrate_first=True) as sessions, session_scope(sessions) as session:
        record(session, account_id=None, action=Action.model_installed, detail=installed.card.version)
    click.echo(f"installed {installed.card.version} in {installed.card.path}")


@models.command("compare")
@click.argument("old")
@click.argument("new")
@click.option(
    "--site-thresholds",
    is_flag=True,
    help="Flag each image at its site's calibrated threshold for each version, where it has one.",
)
@TEXT_OR_JSON
@click.pass_obj
def models_compare(settings: Settings, old: str, new: str, site_thresholds: bool, fmt: str) -> None:
    """Compare the flags of versions OLD and NEW on the images both scored, and against verdicts.

    Both sides are flagged from their stored probabilities at each version's own threshold (its
    card's), named in the report; --site-thresholds uses the sites' calibrated ones where stored.
    """
    from skinscreen.db.session import session_scope
    from skinscreen.ops.compare import compare_versions

    own = {v: _own_threshold(settings, v) for v in (old, new)}
    with _sessions(settings) as sessions, session_scope(sessions) as session:
        report = compare_versions(session, old, new, own=own, site_thresholds=site_thresholds).as_dict()
    if fmt == "json":
        _echo_json(report)
        return
    for version, rule in report["thresholds"].items():
        line = f"threshold of {version}: {rule['rule']} ({rule['threshold']:.4f})"
        if "sites" in rule:
            calibrated = ", ".join(f"{site} {t:.4f}" for site, t in rule["sites"].items())
            line += f"; calibrated sites: {calibrated or 'none'}"
        click.echo(line)
    agreement = report["agreement"]
    click.echo(
        f"images scored by both   {report['images_both']} (only {old}: {report['images_only_old']}, "
        f"only {new}: {report['images_only_new']})"
    )
    click.echo(
        f"flags agree             {report['agree']}"
        + (f" ({agreement:.1%})" if agreement is not None else "")
    )
    click.echo(f"flagged                 {old}: {report['flagged_old']}, {new}: {report['flagged_new']}")
    click.echo(f"would become flagged    {report['newly_flagged']}  {_ids(report['newly_flagged_ids'])}")
    click.echo(
        f"would lose their flag   {report['no_longer_flagged']}  {_ids(report['no_longer_flagged_ids'])}"
    )
    click.echo(
        f"with a verdict          {report['with_verdict']} (malignant or benign; the latest verdict counts)"
    )
    for version, c in report["against_verdicts"].items():
        click.echo(
            f"  {version}: sensitivity {_ratio(c['tp'], c['tp'] + c['fn'])}, "
            f"specificity {_ratio(c['tn'], c['tn'] + c['fp'])}"
        )


def _own_threshold(settings: Settings, version: str) -> float:
    """A version's own threshold, from its card: installed or shipped, or SKINSCREEN_MODEL's."""
    from skinscreen.models.registry import find_model, read_card

    return read_card(find_model(version, settings.models_folder(), default=settings.model)).threshold


def _ids(ids: list[int], shown: int = 10) -> str:
    if not ids:
        return ""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return "cases " + ", ".join(map(str, ids[:shown])) + more


def _ratio(num: int, den: int) -> str:
    return f"{num / den:.3f} ({num}/{den})" if den else "- (no such verdicts)"


@models.command("promote")
@click.argument("version")
@click.option(
    "--force", is_flag=True, help="Promote although some scored images have no prediction of VERSION."
)
@click.option("--note", help="Why (kept with the promotion).")
@click.pass_obj
def models_promote(settings: Settings, version: str, force: bool, note: str | None) -> None:
    """Make VERSION the model in force: workers score new images with it from their next batch, and the
    queue, the API and `cases` show its flags (audited). VERSION must be installed or shipped."""
    from skinscreen.db.session import session_scope
    from skinscreen.models.registry import find_model, read_card
    from skinscreen.ops.promotion import promote

    # Workers find the promoted version by its card's version: refuse one the registry cannot resolve
    # (a folder given by path must be installed first), with ModelError.
    folder = settings.models_folder()
    version = read_card(find_model(version, folder, default=settings.model)).version
    find_model(version, folder, default=settings.model)
    with _sessions(settings, migrate_first=True) as sessions, session_scope(sessions) as session:
        done = promote(session, version, force=force, note=note)
    click.echo(
        f"promoted {done.version} (was {done.previous or 'none'}); {done.scored} images scored by it"
        + (f", {done.missing} not (they show their first prediction)" if done.missing else "")
    )
    if done.sites_to_recalibrate:
        click.echo(f"sites to recalibrate for {done.version}: {', '.join(done.sites_to_recalibrate)}")
    click.echo(f"workers score new images with {done.version} from their next batch (no restart)")
    if done.previous:
        click.echo(f"way back: skinscreen models rollback   (or: skinscreen models promote {done.previous})")


@models.command("rollback")
@click.pass_obj
def models_rollback(settings: Settings) -> None:
    """Promote again the version that was shown before the last promotion (audited)."""
    from skinscreen.db.session import session_scope
    from skinscreen.ops.promotion import PromotionError, promote, promotion_history

    with _sessions(settings, migrate_first=True) as sessions, session_scope(sessions) as session:
        history = promotion_history(session)
        if not history or not history[0]["previous_version"]:
            raise PromotionError("nothing to roll back to: no earlier version was shown")
        done = promote(session, history[0]["previous_version"], force=True, note="rollback")
    click.echo(f"promoted {done.version} again (was {done.previous})")


@models.command("history")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.pass_obj
def models_history(settings: Settings, fmt: str) -> None:
    """Every promotion, newest first."""
    from skinscreen.db.session import session_scope
    from skinscreen.ops.promotion import promotion_history

    with _sessions(settings, migrate_first=True) as sessions, session_scope(sessions) as session:
        rows = promotion_history(session)
    write_rows(rows, fmt=fmt, columns=["id", "created_at", "model_version", "previous_version", "note"])


@click.command()
@click.option("--model", "version", required=True, help="Version of an installed or shipped model.")
@click.option("--site", help="Only images of this site.")
@click.option("--since", type=click.DateTime(), help="Only images registered since this date (UTC).")
@click.option(
    "--through-workers", is_flag=True, help="Send batches to the Celery workers instead of scoring here."
)
@click.option("--batch-size", type=int, help="Images per model call or task (default SKINSCREEN_BATCH_SIZE).")
@click.option(
    "--wait-idle",
    type=float,
    default=120.0,
    show_default=True,
    help="With --through-workers: stop waiting after this many seconds without a worker's report.",
)
@TEXT_OR_JSON
@click.pass_obj
def rescore(
    settings: Settings,
    version: str,
    site: str | None,
    since: datetime | None,
    through_workers: bool,
    batch_size: int | None,
    wait_idle: float,
    fmt: str,
) -> None:
    """Score existing images with another model version as a shadow (nothing reviewers see changes)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from skinscreen.counts import Counts
    from skinscreen.db.audit import Action, record
    from skinscreen.db.session import session_scope
    from skinscreen.models.registry import find_model
    from skinscreen.ops.rescore import rescore as run_rescore
    from skinscreen.ops.rescore import rescore_targets, summary

    size = batch_size or settings.batch_size
    with _sessions(settings, migrate_first=True) as sessions:
        with session_scope(sessions) as session:
            model_dir = find_model(version, settings.models_folder())
            from skinscreen.models.registry import read_card

            card_version = read_card(model_dir).version
            ids = rescore_targets(session, version=card_version, site=site, since=since)
        bar = tqdm(total=len(ids), unit="img", desc=f"rescoring with {card_version}", dynamic_ncols=True)
        if through_workers:
            report = _through_workers(settings, sessions, ids, card_version, size, bar, wait_idle)
        else:
            from skinscreen.models.classifier import load_classifier

            classifier = load_classifier(model_dir, backend=settings.backend, threads=settings.threads)

            def step(part: Counts) -> None:
                bar.update(part.scored + part.failed)

            with ThreadPoolExecutor(max_workers=settings.threads or 2, thread_name_prefix="decode") as pool:
                report = run_rescore(
                    ids,
                    sessions=sessions,
                    classifier=classifier,
                    pool=pool,
                    batch_size=size,
                    audit_fraction=settings.audit_fraction,
                    on_batch=step,
                )
        bar.close()
        done = summary(report, version=card_version, targets=len(ids))
        with session_scope(sessions) as session:
            detail = (
                f"{card_version}: {done['scored']} scored, {done['flagged']} flagged, "
                f"{done['failed']} failed of {len(ids)}"
                + (f", site {site}" if site else "")
                + (f", since {since:%Y-%m-%d}" if since else "")
                + (", workers" if through_workers else "")
            )
            record(session, account_id=None, action=Action.rescore, detail=detail)
    if fmt == "json":
        _echo_json(done)
        return
    for key in ("model_version", "targets", "scored", "flagged", "failed"):
        click.echo(f"{key.replace('_', ' '):<14} {done[key]}")
    for reason, count in done["failed_by_reason"].items():
        click.echo(f"  failed: {count} x {reason}")


def _through_workers(
    settings: Settings,
    sessions: sessionmaker[Session],
    ids: list[int],
    version: str,
    size: int,
    bar: Any,
    wait_idle: float,
) -> Any:
    """Send the batches under a new run id and read the workers' reports until every batch has
    reported, or none came for `wait_idle` seconds: the images of the silent batches not stored by
    then count as failed. Failures and their reasons come from the reports; scored and flagged from
    the stored predictions, so an image is counted once even when a batch was redelivered after a
    worker died (`rescore_ids` then skips, and does not count, what the first run stored)."""
    import uuid

    from celery import Celery

    from skinscreen.counts import Counts
    from skinscreen.db.session import session_scope
    from skinscreen.ops.rescore import flagged_count, scored_by
    from skinscreen.tasknames import QUEUE, RESCORE_BATCH, RESCORE_REPORTS

    run_id = uuid.uuid4().hex
    app = Celery("skinscreen-rescore", broker=settings.broker_url, set_as_current=False)
    batches: dict[str, list[int]] = {}
    for start in range(0, len(ids), size):
        batch = ids[start : start + size]
        sent = app.send_task(
            RESCORE_BATCH, args=[batch, version, run_id], queue=QUEUE, serializer="json", retry=True
        )
        batches[sent.id] = batch
    reports = _read_reports(settings, RESCORE_REPORTS + run_id, batches, bar, wait_idle)
    report = Counts()
    silent: list[int] = []
    for task_id, batch in batches.items():
        if task_id not in reports:
            silent.extend(batch)
            continue
        report.failed += int(reports[task_id]["failed"])
        for reason, count in reports[task_id]["reasons"].items():
            report.reasons[reason] = report.reasons.get(reason, 0) + int(count)
    with session_scope(sessions) as session:
        report.scored = scored_by(session, version=version, image_ids=ids)
        report.flagged = flagged_count(session, version=version, image_ids=ids)
        unreported = len(silent) - (scored_by(session, version=version, image_ids=silent) if silent else 0)
    bar.update(len(silent))
    if unreported:
        report.failed += unreported
        report.reasons[f"no worker reported within {wait_idle:g} s"] = unreported
    return report


def _read_reports(
    settings: Settings, key: str, batches: dict[str, list[int]], bar: Any, wait_idle: float
) -> dict[str, dict[str, Any]]:
    """The workers' reports from the Redis list `key`, by task id, until every batch in `batches`
    (task id -> image ids) has reported or none came for `wait_idle` seconds."""
    import redis

    from skinscreen.heartbeat import connect

    reports: dict[str, dict[str, Any]] = {}
    client = connect(settings.broker_url)
    last_report = time.monotonic()
    while len(reports) < len(batches) and time.monotonic() - last_report < wait_idle:
        try:
            got = client.blpop([key], timeout=1)  # under the client's 5 s socket timeout
        except redis.RedisError as exc:
            logger.warning("could not read the workers' reports (%s); trying again", type(exc).__name__)
            time.sleep(1.0)
            continue
        if got is None:
            continue
        part = json.loads(got[1])
        task_id = part.get("task_id")
        if task_id in batches and task_id not in reports:  # a repeat (retry, redelivery) counts once
            reports[task_id] = part
            bar.update(len(batches[task_id]))
            last_report = time.monotonic()
    try:
        client.delete(key)
        client.close()
    except redis.RedisError:
        pass  # the list expires on its own
    return reports


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
@TEXT_OR_JSON
@click.pass_obj
def purge(settings: Settings, dry_run: bool, fmt: str) -> None:
    """Remove (or archive) image files under SKINSCREEN_RETENTION_DAYS; rows, scores and verdicts stay."""
    from skinscreen.db.session import session_scope
    from skinscreen.retention import purge as run_purge

    with _sessions(settings, migrate_first=True) as sessions, session_scope(sessions) as session:
        report = run_purge(session, settings=settings, dry_run=dry_run)
    summary = report.as_dict()
    if fmt == "json":
        _echo_json(summary)
        return
    verb = "would remove" if dry_run else "archived" if report.mode == "archive" else "deleted"
    click.echo(
        f"retention {report.retention_days} days: {verb} {report.files} files ({report.bytes} bytes) "
        f"of {report.images} images; {report.missing} already gone"
    )
    click.echo(
        f"kept: {report.kept_flagged_unreviewed} flagged cases without a verdict, "
        f"{report.kept_audit_unreviewed} audit-sample cases without a verdict"
        + (f", {report.kept_outside_inbox} paths outside the inbox" if report.kept_outside_inbox else "")
        + (
            f", {report.kept_flagged_by_another_version} more flagged only by another model version"
            if report.kept_flagged_by_another_version
            else ""
        )
        + (
            f", {report.kept_changed_bytes} paths now holding other bytes"
            if report.kept_changed_bytes
            else ""
        )
    )


COMMANDS = [models, rescore, purge]
