"""DICOM network commands: dicom-listen (receive, and send results back) and exports."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from skinscreen.cli.base import FORMAT, RET_ERROR, write_rows
from skinscreen.config import Settings

logger = logging.getLogger(__name__)


@click.command("dicom-listen")
@click.option(
    "--inbox",
    type=click.Path(file_okay=False, path_type=Path),
    help="Inbox (default: SKINSCREEN_INBOX's first).",
)
@click.option("--ae-title", help="This node's AE title (default SKINSCREEN).")
@click.option("--port", type=int, help="TCP port (default 11112).")
@click.option("--address", help="Address to bind (default 0.0.0.0).")
@click.option("--allow", multiple=True, help="Accept only this calling AE title (repeatable).")
@click.option("--send/--no-send", default=True, show_default=True, help="Also send pending DICOM results.")
@click.option("--send-every", type=float, default=5.0, show_default=True, help="Seconds between send passes.")
@click.pass_obj
def dicom_listen(
    settings: Settings,
    inbox: Path | None,
    ae_title: str | None,
    port: int | None,
    address: str | None,
    allow: tuple[str, ...],
    send: bool,
    send_every: float,
) -> None:
    """Receive DICOM photographs (C-STORE, C-ECHO) into the inbox; send results back (C-STORE SCU)."""
    from skinscreen.db import migrate
    from skinscreen.db.session import make_engine, make_session_factory
    from skinscreen.dicomnet.listener import Listener
    from skinscreen.metrics import CallbackCollector, serve_metrics

    given: dict[str, Any] = {"dicom_ae_title": ae_title, "dicom_port": port, "dicom_address": address}
    if allow:
        given["dicom_allow"] = list(allow)
    settings = settings.model_copy(update={k: v for k, v in given.items() if v is not None})
    root = inbox or (settings.inbox[0] if settings.inbox else None)
    if root is None:
        raise click.UsageError("give --inbox or set SKINSCREEN_INBOX")
    root.mkdir(parents=True, exist_ok=True)
    listener = Listener(
        root,
        ae_title=settings.dicom_ae_title,
        address=settings.dicom_address,
        port=settings.dicom_port,
        allow=settings.dicom_allow,
        quiet_seconds=settings.dicom_quiet_seconds,
        max_associations=settings.dicom_max_associations,
        acse_timeout=settings.dicom_acse_timeout,
        network_timeout=settings.dicom_network_timeout,
        max_store_bytes=settings.dicom_max_store_bytes,
    )
    serve_metrics(
        settings, role="dicom-listen", collectors=[CallbackCollector(listener.metrics_reading, counter=True)]
    )
    stop = threading.Event()
    sender: threading.Thread | None = None
    if send and settings.dicom_results:
        from skinscreen.dicomnet.sender import ResultBuilder, send_due

        migrate.upgrade(settings.database_url)
        sessions = make_session_factory(make_engine(settings.database_url))
        builder = ResultBuilder(settings)

        def send_loop() -> None:
            while not stop.wait(send_every):
                try:
                    send_due(sessions, settings, builder=builder)
                except Exception:  # the database away for a moment: try again next pass
                    logger.exception("send pass failed")

        sender = threading.Thread(target=send_loop, name="dicom-send", daemon=True)
        sender.start()
    signal.signal(signal.SIGTERM, lambda *_: listener.request_stop())
    try:
        listener.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
    click.echo(
        f"received {listener.stager.received}, refused {listener.stager.refused}, "
        f"released {listener.stager.released}"
    )


@click.command()
@click.option("--state", type=click.Choice(["pending", "sent", "failed"]), help="Only exports in this state.")
@click.option(
    "--retry", is_flag=True, help="Send now: failed ones again and every pending one, backoff or not."
)
@click.option("--limit", type=int, default=200, show_default=True, help="At most this many rows.")
@FORMAT
@click.pass_obj
def exports(settings: Settings, state: str | None, retry: bool, limit: int, fmt: str) -> None:
    """List DICOM results sent back to PACS (pending, sent, failed); --retry sends them now."""
    from skinscreen.db import exports as rows
    from skinscreen.db import migrate
    from skinscreen.db.session import make_engine, make_session_factory, session_scope
    from skinscreen.db.tables import ExportState
    from skinscreen.dicomnet.sender import send_due

    migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    failed = False
    if retry:
        if not settings.dicom_results:
            raise click.UsageError(
                "set SKINSCREEN_DICOM_DESTINATION (AE@host:port) or SKINSCREEN_DICOM_OUTBOX"
            )
        with session_scope(sessions) as session:
            again = rows.retry_failed(session)
            rows.make_due(session)
        report = send_due(sessions, settings, everything=True, limit=10_000)
        click.echo(
            f"retried {again} failed; sent {report.sent}, failed {report.failed}, pending {report.pending}",
            err=True,
        )
        failed = not report.ok
    with session_scope(sessions) as session:
        listed = rows.list_exports(session, state=ExportState(state) if state else None, limit=limit)
    engine.dispose()
    write_rows(listed, fmt=fmt, columns=rows.COLUMNS)
    if failed:
        sys.exit(RET_ERROR)


COMMANDS = [dicom_listen, exports]
