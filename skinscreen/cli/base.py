"""The click group, settings, logging, exit codes and output helpers shared by every command."""

from __future__ import annotations

import csv
import importlib
import json
import logging
import sys
from datetime import datetime
from typing import Any

import click
from pydantic import ValidationError

from skinscreen import __version__
from skinscreen.config import Settings
from skinscreen.errors import SkinScreenError

RET_OK = 0
RET_ERROR = 1
RET_USAGE = 2
RET_CONNECT = 3
QUIET = "skinscreen.quiet"

EPILOG = """\b
Examples:
  skinscreen run samples/inbox --once          score a folder in process (SQLite, no Redis)
  skinscreen predict lesion.jpg scan.dcm       score files, no database
  skinscreen cases --flagged --format csv      flagged cases, highest probability first
  SKINSCREEN_DATABASE_URL=postgresql+psycopg://db/skinscreen \\
  SKINSCREEN_BROKER_URL=redis://redis:6379/0 skinscreen worker --concurrency 2
"""


class BarSafeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines written through tqdm, which lifts a progress bar out of their way and redraws it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # as StreamHandler does: a log line never takes the program down
            self.handleError(record)


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    handler = BarSafeHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # highdicom logs each object it builds at INFO: one result sent would be a dozen lines.
    for noisy in ("alembic", "absl", "tensorflow", "h5py", "watchdog", "highdicom"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


# Which module holds each command: a command's module (and what it imports) loads only when that
# command runs, so `skinscreen ingest` never imports the models, nor `skinscreen worker` the training code.
COMMAND_MODULES = {
    **dict.fromkeys(["run", "ingest", "worker", "sweep", "requeue", "db"], "pipeline_commands"),
    **dict.fromkeys(["cases", "status"], "query_commands"),
    **dict.fromkeys(["predict", "evaluate"], "model_commands"),
    **dict.fromkeys(["train", "export", "quantize"], "training_commands"),
    "bench": "bench_commands",
    **dict.fromkeys(["evaluate-hospitals", "cache-features", "leave-one-out"], "hospital_commands"),
    **dict.fromkeys(["serve", "users", "reviews"], "review_commands"),
    **dict.fromkeys(["sites", "calibrate", "model-reference"], "site_commands"),
    **dict.fromkeys(["models", "rescore", "purge"], "ops_commands"),
    **dict.fromkeys(["dicom-listen", "exports"], "dicom_commands"),
}


class LazyGroup(click.Group):
    """The click group, importing a command's module when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMAND_MODULES:
            return super().get_command(ctx, cmd_name)
        module = importlib.import_module(f"skinscreen.cli.{COMMAND_MODULES[cmd_name]}")
        commands: list[click.Command] = module.COMMANDS
        return next(c for c in commands if c.name == cmd_name)


@click.group(cls=LazyGroup, epilog=EPILOG)
@click.version_option(__version__)
@click.option(
    "--database-url", envvar="SKINSCREEN_DATABASE_URL", help="SQLAlchemy URL (default: SQLite file)."
)
@click.option("-v", "--verbose", count=True, help="More log lines.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, verbose: int, quiet: bool) -> None:
    """Screen dermoscopy images and DICOM files for malignant lesions."""
    setup_logging(-1 if quiet else verbose)
    ctx.meta[QUIET] = quiet  # read by commands that draw a progress bar
    overrides: dict[str, Any] = {}
    if database_url:
        overrides["database_url"] = database_url
    try:
        ctx.obj = Settings(**overrides)
    except ValidationError as exc:
        # Only where and what: pydantic's own text repeats the value, which may be a secret.
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"bad settings: {problems}") from exc


def main() -> None:
    """Entry point: map project errors to a one-line message and an exit code."""
    from sqlalchemy.exc import OperationalError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(RET_ERROR)
    except SkinScreenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(RET_ERROR)
    except OperationalError as exc:
        click.echo(f"error: cannot reach the database: {exc.orig}", err=True)
        sys.exit(RET_CONNECT)
    sys.exit(RET_OK)


def write_rows(rows: list[dict[str, Any]], *, fmt: str, columns: list[str]) -> None:
    """Print rows as a table, CSV (with a header) or a JSON list."""
    out = sys.stdout
    if fmt == "json":
        out.write(json.dumps(rows, indent=1, default=json_value) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = [[_cell(r.get(c)) for c in columns] for r in rows]
        widths = [max([len(c)] + [len(row[i]) for row in table]) for i, c in enumerate(columns)]
        out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + "\n")
        for row in table:
            out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + "\n")


def json_value(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
