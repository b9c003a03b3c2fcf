"""Site commands: sites (operating points, estimates), calibrate, model-reference (drift baseline)."""

from __future__ import annotations

import getpass
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from skinscreen.cli.base import json_value
from skinscreen.config import Settings
from skinscreen.errors import CalibrationError

logger = logging.getLogger(__name__)

SITE_EPILOG = """\b
Examples:
  skinscreen calibrate ~/labelled/ward7 --site ward7 --sensitivity 0.90
  skinscreen calibrate --site ward7 --from-reviews
  skinscreen calibrate --site ward7 --clear
  skinscreen sites --format json
"""


def _interval(p: dict[str, Any]) -> str:
    if p.get("value") is None:
        return "-"
    return f"{p['value']:.3f} ({p['low']:.2f}-{p['high']:.2f})"


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--model", help="Model name or directory (default: the model in force).")
@click.pass_obj
def sites(settings: Settings, fmt: str, model: str | None) -> None:
    """Each site: images, flag rate, the threshold in force and its evidence, estimated real performance."""
    from skinscreen.db.session import make_engine, make_session_factory, session_scope
    from skinscreen.sites.report import in_force_info, model_info, site_rows

    engine = make_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        info = model_info(model) if model else in_force_info(session, settings=settings)
        rows = site_rows(session, model=info)
    engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, default=json_value))
        return
    click.echo(f"model {info.version}, its own threshold {info.threshold:.4f}")
    for r in rows:
        est = r["estimate"]
        rate = f"{r['flag_rate']:.3f}" if r["flag_rate"] is not None else "-"
        click.echo(
            f"\n{r['site']}: {r['images']} images, {r['predicted']} scored by this model, "
            f"{r['flagged']} flagged (rate {rate}), {r['audit']} audit cases"
        )
        line = f"  threshold {r['threshold']:.4f} ({r['threshold_source']})"
        if r["threshold_source"] != "model":
            at = r["evidence"]["at_threshold"]
            line += (
                f", sensitivity target {r['target_sensitivity']:.2f}, by {r['calibrated_by']} on "
                f"{r['calibrated_at']:%Y-%m-%d %H:%M}: "
                f"{at['n_malignant']} malignant / {at['n_benign']} benign, "
                f"sensitivity {_interval(at['sensitivity'])}, specificity {_interval(at['specificity'])}"
            )
        click.echo(line)
        click.echo(
            f"  reviewed: {est['reviewed_flagged']} flagged, {est['reviewed_audit']} audit; estimated "
            f"sensitivity {_interval(est['sensitivity'])}, specificity {_interval(est['specificity'])}, "
            f"PPV {_interval(est['ppv'])}"
        )


@click.command(epilog=SITE_EPILOG)
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--site", required=True, help="The site (first folder level under the inbox).")
@click.option(
    "--sensitivity",
    type=click.FloatRange(0.5, 0.999),
    default=0.90,
    show_default=True,
    help="Malignant sensitivity the site's threshold must reach.",
)
@click.option(
    "--from-reviews",
    is_flag=True,
    help="Use the site's verdicts (flagged and audit cases) instead of FOLDER.",
)
@click.option("--clear", is_flag=True, help="Return the site to the model's own threshold.")
@click.option(
    "--accept-lower-sensitivity",
    is_flag=True,
    help="Apply a threshold whose sample sensitivity is below the target or below the threshold in force's.",
)
@click.option("--model", help="Model name or directory (default: the model in force).")
@click.option("--by", "ran_by", help="Who runs this, for the audit trail (default: the login name).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def calibrate(
    settings: Settings,
    folder: Path | None,
    site: str,
    sensitivity: float,
    from_reviews: bool,
    clear: bool,
    accept_lower_sensitivity: bool,
    model: str | None,
    ran_by: str | None,
    fmt: str,
) -> None:
    """Give a site its own threshold from a labelled sample FOLDER (benign/, malignant/) or its reviews.

    The threshold is the one with the highest specificity at the asked sensitivity, stored for this
    site and model version with its evidence, audited; the site's unreviewed cases are re-flagged.
    A sample too small for the asked sensitivity is refused with the numbers. Before it takes effect,
    the command prints what it costs: the malignant images of the sample it leaves unflagged (by file
    name, or case id), the sensitivity with its 95 % interval and the change in flag rate; a threshold
    that unflags malignant images the threshold in force flags is refused without
    --accept-lower-sensitivity.
    """
    from skinscreen.db import migrate
    from skinscreen.db.session import make_engine, make_session_factory, session_scope
    from skinscreen.sites import calibration
    from skinscreen.sites.report import model_info

    if sum([folder is not None, from_reviews, clear]) != 1:
        raise click.UsageError("give exactly one of FOLDER, --from-reviews or --clear")
    settings = settings.model_copy(update={"model": model}) if model else settings
    who = ran_by or getpass.getuser()
    migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    if not model:  # a site's threshold belongs to the version the workers score with
        settings = settings.model_copy(update={"model": _in_force_dir(settings, sessions)})
    info = model_info(settings.model)
    result: dict[str, Any] = {"site": site, "model_version": info.version}
    try:
        if folder is not None:
            from skinscreen.models.classifier import load_classifier

            calibration.labelled_sample(folder, target=sensitivity)  # refuse before loading a model

            classifier = load_classifier(settings.model, backend=settings.backend, threads=settings.threads)
            chosen = calibration.from_folder(
                folder, site=site, target=sensitivity, classifier=classifier, batch_size=settings.batch_size
            )
        if clear:
            with session_scope(sessions) as session:
                result["reflag"] = calibration.clear(
                    session,
                    site=site,
                    model_version=info.version,
                    model_threshold=info.threshold,
                    ran_by=who,
                    audit_fraction=settings.audit_fraction,
                )
            result["threshold"] = info.threshold
        else:
            with session_scope(sessions) as session:
                if from_reviews:
                    chosen = calibration.from_reviews(
                        session,
                        site=site,
                        model_version=info.version,
                        target=sensitivity,
                        model_threshold=info.threshold,
                    )
                result.update(
                    threshold=chosen.threshold,
                    cost=calibration.cost(session, chosen, model_threshold=info.threshold),
                )
            refused = result["cost"]["refuse"] if not accept_lower_sensitivity else None
            _show(result, fmt=fmt, refused=refused)  # what it costs, before it takes effect
            if refused:
                raise CalibrationError(
                    f"the threshold {chosen.threshold:.4f} was not applied: {refused}. "
                    "Pass --accept-lower-sensitivity to apply it anyway."
                )
            with session_scope(sessions) as session:
                result["reflag"] = calibration.apply(
                    session, chosen, ran_by=who, audit_fraction=settings.audit_fraction
                )
            result["evidence"] = {k: v for k, v in chosen.evidence.items() if k != "reference"}
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(result, indent=1, default=json_value))
        return
    _print_calibration(result, model_threshold=info.threshold)


def _show(result: dict[str, Any], *, fmt: str, refused: str | None) -> None:
    """The cost of a new threshold: as text before it takes effect, or as JSON when it is refused."""
    if fmt == "json":
        if refused:
            click.echo(json.dumps({**result, "applied": False}, indent=1, default=json_value))
        return
    c = result["cost"]
    sample, site = c["sample"], c["site"]
    out = sys.stdout
    out.write(
        f"site {result['site']}, model {result['model_version']}: threshold in force "
        f"{c['threshold_in_force']:.4f}, new {c['threshold']:.4f}\n"
        f"  sample: {sample['malignant']} malignant, {sample['benign']} benign; sensitivity (95 % interval) "
        f"{_interval(sample['sensitivity'])}, with the threshold in force "
        f"{_interval(sample['sensitivity_in_force'])}\n"
    )
    left = sample["malignant_left_unflagged"]
    lost = set(sample["malignant_newly_unflagged"])
    out.write(f"  malignant images of the sample it leaves unflagged: {len(left)}\n")
    for name in left:
        out.write(f"    {name}" + ("   (flagged by the threshold in force)" if name in lost else "") + "\n")
    if sample["malignant_newly_flagged"]:
        out.write(
            f"  malignant images it flags that are unflagged now: {len(sample['malignant_newly_flagged'])}\n"
        )
    out.write(
        f"  flag rate on the sample: {_rate(sample['flag_rate_in_force'])} -> {_rate(sample['flag_rate'])}\n"
    )
    if site["cases"]:
        out.write(
            f"  flag rate of the site's {site['cases']} scored cases: {_rate(site['flag_rate_in_force'])} -> "
            f"{_rate(site['flag_rate'])} (reviewed cases keep their flag)\n"
        )
    out.flush()


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _in_force_dir(settings: Settings, sessions: Any) -> str:
    """The folder of the model in force: the promoted version, else SKINSCREEN_MODEL."""
    from skinscreen.db.promotions import promoted_version
    from skinscreen.db.session import session_scope
    from skinscreen.models.registry import model_in_force

    with session_scope(sessions) as session:
        return str(model_in_force(promoted_version(session), settings=settings))


def _print_calibration(result: dict[str, Any], *, model_threshold: float) -> None:
    out = sys.stdout
    if "evidence" not in result:
        out.write(f"site {result['site']} back to the model's threshold {result['threshold']:.4f}\n")
    else:
        ev = result["evidence"]
        at, base = ev["at_threshold"], ev["at_model_threshold"]
        out.write(
            f"site {result['site']}, model {result['model_version']}: threshold {result['threshold']:.4f} "
            f"(model's own {model_threshold:.4f}) for sensitivity >= {ev['target_sensitivity']:.2f}\n"
            f"  sample: {at['n_malignant']} malignant, {at['n_benign']} benign\n"
            f"  at the site threshold:  sensitivity {_interval(at['sensitivity'])}, "
            f"specificity {_interval(at['specificity'])}\n"
            f"  at the model threshold: sensitivity {_interval(base['sensitivity'])}, "
            f"specificity {_interval(base['specificity'])}\n"
            f"  intervals: {ev['interval']}\n"
        )
    r = result["reflag"]
    out.write(
        f"  re-decided {r['cases']} unreviewed cases: {r['newly_flagged']} newly flagged, "
        f"{r['unflagged']} unflagged, audit sample +{r['audit_added']} -{r['audit_removed']}\n"
    )


@click.command("model-reference")
@click.option("--model", help="Model name or directory (default: SKINSCREEN_MODEL).")
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The training data folder (DATA/train); default: from the card.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the model directory's card.json with the reference added to this file (default: print it).",
)
@click.pass_obj
def model_reference(settings: Settings, model: str | None, data: Path | None, out: Path | None) -> None:
    """Compute a model's reference score histogram (for drift warnings) from its validation split.

    The split is rebuilt from the card's training section (split seed) and checked against the card's
    training-data fingerprint; when the card has no such section or the data differ, there is no reference.
    """
    from skinscreen.models.classifier import load_classifier
    from skinscreen.models.registry import resolve_model_dir
    from skinscreen.models.training.reference import validation_reference

    model_dir = resolve_model_dir(model or settings.model)
    classifier = load_classifier(model_dir, backend=settings.backend, threads=settings.threads)
    reference = validation_reference(classifier, data=data, batch_size=settings.batch_size)
    if out is None:
        click.echo(json.dumps(reference.as_dict(), indent=1))
        return
    card = json.loads((model_dir / "card.json").read_text())
    card["reference"] = reference.as_dict()
    out.write_text(json.dumps(card, indent=1) + "\n")
    click.echo(f"wrote {out} with a reference of {reference.n} validation scores ({reference.source})")


COMMANDS = [sites, calibrate, model_reference]
