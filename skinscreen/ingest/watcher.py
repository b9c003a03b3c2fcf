"""The ingester: watchdog events plus periodic rescans find complete files; each is hashed and registered
once, and the new ids go to a `Dispatcher` (batching, sending, sweeping)."""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from skinscreen.checksum import sha256_file
from skinscreen.config import Settings
from skinscreen.counts import Counts
from skinscreen.db import queries
from skinscreen.db.dicom_values import column_width, fitted
from skinscreen.db.errors import describe, is_permanent
from skinscreen.db.session import session_scope
from skinscreen.db.tables import SeenFile
from skinscreen.ingest import scanner
from skinscreen.ingest.dispatch import Dispatcher
from skinscreen.ingest.settle import Ready, SettleTracker

logger = logging.getLogger(__name__)

SWEEP_EVERY = 60.0
RETRY_WAIT = 2.0
REGISTER_CHUNK = 128
SERVICE_ERRORS = (SQLAlchemyError, KombuOperationalError, ConnectionError)


class _EventQueue(FileSystemEventHandler):
    """Moves watchdog's events (observer thread) onto a queue the ingest loop drains."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[tuple[Path, bool]] = queue.SimpleQueue()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        raw = event.dest_path if event.event_type == "moved" else event.src_path
        path = Path(raw.decode() if isinstance(raw, bytes) else raw)
        if not scanner.is_temporary(path):
            self.events.put((path, event.event_type == "closed"))


class Ingester:
    """Takes every complete file under the inbox roots exactly once and hands its id to the dispatcher."""

    def __init__(
        self,
        roots: Sequence[Path],
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        dispatcher: Dispatcher,
        poll: bool = False,
        on_registered: Callable[[int, int], None] | None = None,
    ) -> None:
        self.roots = [Path(r).absolute() for r in roots]
        for root in self.roots:
            if not root.is_dir():
                raise FileNotFoundError(f"inbox folder {root} does not exist")
        self.settings = settings
        self.sessions = sessions
        self.poll = poll
        self.on_registered = on_registered
        self.dispatcher = dispatcher
        self.tracker = SettleTracker(settle_seconds=settings.settle_seconds)
        self._handler = _EventQueue()
        self._observer: BaseObserver | None = None
        self.stop_event = threading.Event()
        self.counts = Counts()
        self._unstorable: set[tuple[str, int, int]] = set()  # refused paths the database cannot hold

    # -- finding files ------------------------------------------------------------
    def root_of(self, path: Path) -> Path | None:
        for root in self.roots:
            if path == root or root in path.parents:
                return root
        return None

    def scan(self, *, by_mtime: bool = False) -> int:
        """Walk every root; files not yet taken (by path, size, mtime) go to the settle tracker.

        `by_mtime` (`--once`): files unchanged for the settle time already are taken without waiting.
        """
        with session_scope(self.sessions) as session:
            seen = queries.seen_keys(session)
        found = 0
        for root in self.roots:
            for path in scanner.walk(root):
                if scanner.in_hidden_folder(path, root):
                    continue
                try:
                    st = path.lstat()
                except OSError:
                    continue
                key = (str(path), st.st_size, st.st_mtime_ns)
                if key not in seen and key not in self._unstorable:
                    self.tracker.touch(path, stat=st, by_mtime=by_mtime)
                    found += 1
        return found

    def drain_events(self) -> None:
        while True:
            try:
                path, closed = self._handler.events.get_nowait()
            except queue.Empty:
                return
            root = self.root_of(path)
            if root is not None and not scanner.in_hidden_folder(path, root):
                self.tracker.touch(path, closed=closed)

    # -- registering ----------------------------------------------------------------
    def register_ready(self) -> int:
        """Hash and register complete files; return how many were taken.

        A large drop is registered a chunk at a time, each chunk's batches sent as soon as it is
        committed, so the workers start on the first files while the rest are still being hashed.
        """
        ready = self.tracker.ready()
        chunk = max(REGISTER_CHUNK, self.settings.batch_size)
        for start in range(0, len(ready), chunk):
            part = ready[start : start + chunk]
            counts = dataclasses.replace(self.counts)  # a chunk rolled back counts nothing
            try:
                new_ids = self._register_chunk(part)
            except Exception as exc:
                if not is_permanent(exc):
                    if not isinstance(exc, SQLAlchemyError):
                        raise
                    # Nothing is lost: the files go back to the tracker and are tried again.
                    logger.warning("database unavailable while registering (%s); will retry", describe(exc))
                    for item in ready[start:]:
                        self.tracker.touch(item.path)
                    return start
                self.counts = counts
                new_ids = self._register_each(part)
            self.dispatcher.add(new_ids)
        return len(ready)

    def _register_chunk(self, part: Sequence[Ready]) -> list[int]:
        """Register a chunk in one transaction, in a fixed number of statements; return the new ids."""
        new_ids: list[int] = []
        batch_ids: dict[str, int] = {}  # folder -> batch id, valid within this transaction
        with session_scope(self.sessions) as session:
            keys = [(str(item.path), item.size, item.mtime_ns) for item in part]
            seen = queries.seen_among(session, keys)
            self.counts.seen += len(part)
            records = [
                self._hash(session, item) for item, key in zip(part, keys, strict=True) if key not in seen
            ]
            files = [r for r in records if r is not None]
            changed: list[str] = []  # paths holding new content: an earlier failed read is superseded
            for record, (image_id, new) in zip(
                files, queries.register_files(session, files, batch_ids=batch_ids), strict=True
            ):
                if new:
                    self.counts.new += 1
                    new_ids.append(image_id)
                    changed.append(record.path)
                else:
                    self.counts.duplicate += 1
                if self.on_registered:
                    self.on_registered(image_id, int(new))
                batch = batch_ids[record.folder]
                logger.info(
                    "registered image %d in batch %d%s", image_id, batch, "" if new else " (duplicate)"
                )
            if queries.supersede_failed(session, changed):
                logger.info("failed images superseded by new content at their paths")
        return new_ids

    def _register_each(self, part: Sequence[Ready]) -> list[int]:
        """One transaction a file, after the database refused a chunk for one file's name or path."""
        new_ids: list[int] = []
        for item in part:
            try:
                new_ids += self._register_chunk([item])
            except Exception as exc:
                if not is_permanent(exc):
                    raise
                self._refuse_unstorable(item, exc)
        return new_ids

    def _refuse_unstorable(self, item: Ready, exc: BaseException) -> None:
        """A path the database cannot hold (not UTF-8, too long): refused, recorded escaped, not retried."""
        self.counts.refused += 1
        self._unstorable.add((str(item.path), item.size, item.mtime_ns))
        reason = f"the file's name or folder cannot be stored ({describe(exc)}); rename or move the file"
        try:
            with session_scope(self.sessions) as session:
                seen_id = queries.record_refused_file(
                    session,
                    path=fitted(str(item.path), column_width(SeenFile, "path")),
                    size=item.size,
                    mtime_ns=item.mtime_ns,
                    reason=reason,
                )
        except Exception as again:
            if not is_permanent(again):
                raise
            seen_id = None
        logger.warning("refused a file (seen-file %s): %s", seen_id, reason)

    def _hash(self, session: Session, item: Ready) -> queries.NewFile | None:
        """The file's record to register, or None once it is recorded as refused (with its reason)."""
        root = self.root_of(item.path)
        assert root is not None
        path, size, mtime_ns = str(item.path), item.size, item.mtime_ns
        reason = None
        if scanner.outside_inbox(item.path, root):
            reason = "symlink points outside the inbox; not read"
        elif not item.path.is_file():
            reason = "not a regular file"
        if reason is None:
            try:
                digest = sha256_file(item.path)
            except PermissionError:
                reason = "permission denied"
            except OSError as exc:
                reason = f"cannot read file: {exc.strerror or type(exc).__name__}"
        if reason is not None:
            self.counts.refused += 1
            seen_id = queries.record_refused_file(
                session, path=path, size=size, mtime_ns=mtime_ns, reason=reason
            )
            logger.warning("refused a file (seen-file %s): %s", seen_id, reason)  # ids only: see logsafe
            return None
        where = scanner.placement(item.path, root)
        return queries.NewFile(path, size, mtime_ns, digest, where.site, where.folder)

    # -- running --------------------------------------------------------------------
    def start_observer(self) -> None:
        self._observer = PollingObserver(timeout=1.0) if self.poll else Observer()
        for root in self.roots:
            self._observer.schedule(self._handler, str(root), recursive=True)
        self._observer.start()

    def stop(self) -> None:
        self.stop_event.set()

    def run(self, *, once: bool = False, tick: float = 0.2) -> None:
        """Ingest until stopped (`once`: take what is there now, send it, return)."""
        if not once:
            self.start_observer()
        started = False
        last_scan = last_sweep = last_orphans = time.monotonic()
        try:
            while not self.stop_event.is_set():
                try:
                    if not started:
                        self.dispatcher.send_unsent()
                        self.scan(by_mtime=once)
                        started, last_scan, last_sweep = True, time.monotonic(), time.monotonic()
                    self.drain_events()
                    self.register_ready()
                    self.dispatcher.tick()
                    if once and len(self.tracker) == 0:
                        self.dispatcher.flush()
                        return
                    now = time.monotonic()
                    if now - last_scan >= self.settings.rescan_interval:
                        self.scan()
                        last_scan = now
                    if now - last_orphans >= self.settings.heartbeat_seconds:
                        self.dispatcher.resend_orphans()  # batches held by workers that died
                        last_orphans = now
                    if now - last_sweep >= min(SWEEP_EVERY, self.settings.sweep_after):
                        self.dispatcher.sweep()
                        last_sweep = now
                except SERVICE_ERRORS as exc:
                    # The database or the broker is away (a restart): keep every file and id, try again.
                    logger.warning(
                        "database or broker unavailable (%s); retrying in %.0f s",
                        type(exc).__name__,
                        RETRY_WAIT,
                    )
                    self.stop_event.wait(RETRY_WAIT)
                    continue
                self.stop_event.wait(tick)
            self.dispatcher.flush()
        finally:
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=5)
