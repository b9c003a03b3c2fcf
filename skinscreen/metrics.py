"""Prometheus metrics (prometheus-client): what the pipeline's processes did, and what the database holds.

- The workers count per batch (`observe_batch`): images scored, flagged, failed by reason, batch
  latency and throughput histograms, a heartbeat and the model version in force. Celery's prefork
  children share them through prometheus-client's multiprocess mode: `skinscreen worker` points
  PROMETHEUS_MULTIPROC_DIR at a fresh folder before anything imports this module.
- `ingest` and `dicom-listen` expose their own counters (registered files, instances received)
  and the queue depth, read when scraped.
- The review server's `/metrics` adds the database's view, read when scraped: images by state,
  flag rate by site, exports by state.

`ingest`, `worker` and `dicom-listen` serve on SKINSCREEN_METRICS_PORT (bound to
SKINSCREEN_METRICS_ADDRESS, loopback by default); the review server serves `/metrics` on its own
port, with no sign-in, behind `Authorization: Bearer SKINSCREEN_METRICS_TOKEN` (401 while that is unset).
Labels never carry file names, paths or header values.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from skinscreen.config import Settings

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HOST = socket.gethostname()

IMAGES_SCORED = Counter("skinscreen_images_scored", "Images scored by this process's workers.")
IMAGES_FLAGGED = Counter("skinscreen_images_flagged", "Scored images at or above the threshold.")
IMAGES_FAILED = Counter("skinscreen_images_failed", "Images that could not be scored, by reason.", ["reason"])
BATCH_SECONDS = Histogram(
    "skinscreen_batch_seconds",
    "Seconds from a batch's start to its results being stored.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
THROUGHPUT = Histogram(
    "skinscreen_batch_images_per_second",
    "Images per second of each batch.",
    buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500),
)
HEARTBEAT = Gauge(
    "skinscreen_worker_heartbeat_seconds",
    "Unix time of a worker process's last finished batch (or start).",
    ["host"],
    multiprocess_mode="max",
)
MODEL = Gauge(
    "skinscreen_worker_model_info",
    "The model version a worker scores with (1).",
    ["version"],
    multiprocess_mode="max",
)
REASON_LENGTH = 120


def observe_batch(
    *, scored: int, flagged: int, failed: dict[str, int], seconds: float, model_version: str
) -> None:
    """Count one scored batch (called by `score_ids`)."""
    IMAGES_SCORED.inc(scored)
    IMAGES_FLAGGED.inc(flagged)
    for reason, count in failed.items():
        IMAGES_FAILED.labels(reason=reason[:REASON_LENGTH]).inc(count)
    total = scored + sum(failed.values())
    if total:
        BATCH_SECONDS.observe(seconds)
        THROUGHPUT.observe(total / seconds if seconds > 0 else 0.0)
    heartbeat(model_version)


_scoring_with: list[str] = []  # the version this process last reported


def heartbeat(model_version: str | None = None) -> None:
    HEARTBEAT.labels(host=HOST).set(time.time())
    if model_version:
        if _scoring_with and _scoring_with[0] != model_version:
            MODEL.labels(version=_scoring_with[0]).set(0)  # swapped for a promoted version
        MODEL.labels(version=model_version).set(1)
        _scoring_with[:] = [model_version]


Reading = Callable[[], Iterable[tuple[str, str, float | None, dict[str, str]]]]


class CallbackCollector(Collector):
    """Metrics read when scraped: `read()` yields (name, help, value or None, labels).

    Gauges, or counters with `counter=True` (for totals a process keeps itself, like the ingester's).
    """

    def __init__(self, read: Reading, *, counter: bool = False) -> None:
        self.read = read
        self.counter = counter

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for name, help_text, value, labels in self.read():
            if value is None:
                continue
            family = families.get(name)
            if family is None:
                if self.counter:
                    family = CounterMetricFamily(name, help_text, labels=sorted(labels))
                else:
                    family = GaugeMetricFamily(name, help_text, labels=sorted(labels))
                families[name] = family
            family.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()


def ingester_reading(counts: Callable[[], dict[str, Any]]) -> Reading:
    """The ingester's own totals, read when scraped: files seen, new, duplicate, refused."""

    def read() -> Iterable[tuple[str, str, float | None, dict[str, str]]]:
        for result, count in counts().items():
            yield "skinscreen_ingest_files", "Files the ingester took, by outcome.", count, {"result": result}

    return read


def queue_depth_reading(settings: Settings) -> Reading:
    from skinscreen.ingest.enqueue import queue_depth

    def read() -> Iterable[tuple[str, str, float | None, dict[str, str]]]:
        depth = queue_depth(settings.broker_url)
        yield "skinscreen_queue_depth", "Batches waiting in the Redis queue.", depth, {}

    return read


def database_reading(sessions: Any) -> Reading:
    """Images by state, scored and flagged per site, exports by state: from the database, when scraped."""
    from skinscreen.db.session import session_scope

    def read() -> Iterable[tuple[str, str, float | None, dict[str, str]]]:
        with session_scope(sessions) as session:
            images, exports = state_counts(session)
            sites = site_counts(session)
        for state, count in images.items():
            yield "skinscreen_images", "Images in the database by state.", count, {"state": state}
        for state, count in exports.items():
            yield "skinscreen_dicom_exports", "DICOM results by delivery state.", count, {"state": state}
        for site, (scored, flagged) in sites.items():
            yield "skinscreen_site_scored", "Scored images per site.", scored, {"site": site}
            yield "skinscreen_site_flagged", "Flagged images per site.", flagged, {"site": site}
            rate = flagged / scored if scored else None
            yield (
                "skinscreen_site_flag_rate",
                "Share of a site's scored images that are flagged.",
                rate,
                {"site": site},
            )

    return read


def state_counts(session: Any) -> tuple[dict[str, int], dict[str, int]]:
    """Images by state and DICOM exports by state, every state present."""
    from sqlalchemy import func, select

    from skinscreen.db.tables import DicomExport, ExportState, Image, State

    images = {s.value: 0 for s in State}
    for state, count in session.execute(select(Image.state, func.count()).group_by(Image.state)):
        images[State(state).value] = int(count)
    exports = {s.value: 0 for s in ExportState}
    for state, count in session.execute(select(DicomExport.state, func.count()).group_by(DicomExport.state)):
        exports[ExportState(state).value] = int(count)
    return images, exports


def site_counts(session: Any) -> dict[str, tuple[int, int]]:
    """Per site: scored images and flagged images (by each image's newest prediction)."""
    from sqlalchemy import func, select

    from skinscreen.db.queries import latest_prediction
    from skinscreen.db.tables import Batch, Image, Prediction, State

    latest = latest_prediction()
    stmt = (
        select(Batch.site, func.count(Image.id), func.count(Image.id).filter(Prediction.flagged.is_(True)))
        .join(Image, Image.batch_id == Batch.id)
        .join(latest, latest.c.image_id == Image.id)
        .join(Prediction, Prediction.id == latest.c.pid)
        .where(Image.state == State.scored)
        .group_by(Batch.site)
    )
    return {site: (int(scored), int(flagged)) for site, scored, flagged in session.execute(stmt)}


def in_force(sessions: Any, settings: Settings) -> str:
    """The version of the model in force, read when scraped: the promoted one, else SKINSCREEN_MODEL's."""
    from skinscreen.db.promotions import promoted_version
    from skinscreen.db.session import session_scope
    from skinscreen.models.registry import read_card, resolve_model_dir

    with session_scope(sessions) as session:
        promoted = promoted_version(session)
    return promoted if promoted is not None else read_card(resolve_model_dir(settings.model)).version


def multiprocess_registry() -> CollectorRegistry:
    """A registry that sums what every process wrote under PROMETHEUS_MULTIPROC_DIR."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def serve_metrics(
    settings: Settings, *, role: str, collectors: Iterable[Collector] = ()
) -> CollectorRegistry | None:
    """Serve /metrics on SKINSCREEN_METRICS_PORT (nothing when unset); return the registry used."""
    if settings.metrics_port is None:
        return None
    registry = multiprocess_registry() if os.environ.get(MULTIPROC_ENV) else REGISTRY
    for collector in collectors:
        registry.register(collector)
    start_http_server(settings.metrics_port, addr=settings.metrics_address, registry=registry)
    logger.info("%s metrics on http://%s:%d/metrics", role, settings.metrics_address, settings.metrics_port)
    return registry


def review_registry(settings: Settings, sessions: Any) -> CollectorRegistry:
    """The review server's metrics: the database's view, the queue depth and the model in force."""

    def model() -> Iterable[tuple[str, str, float | None, dict[str, str]]]:
        version = in_force(sessions, settings)
        yield "skinscreen_model_info", "The model version in force (1).", 1, {"version": version}

    registry = CollectorRegistry()
    for read in (database_reading(sessions), queue_depth_reading(settings), model):
        registry.register(CallbackCollector(read))
    return registry
