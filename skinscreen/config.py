"""Settings: every SKINSCREEN_* environment variable is read here and nowhere else.

A leaf: it imports nothing of the package, so the syntax a setting is checked against (a DICOM
destination's `AE@host:port`) is defined here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

PLACEHOLDER_SECRETS = {"changethis", "change-me", "secret", "password"}
MIN_SECRET_KEY_LENGTH = 32
MAX_FILE_BYTES = 512 * 2**20
"""Largest image file read: a larger one fails with its size as the reason, before any byte is decoded
(the largest photograph Pillow's bomb guard lets through, uncompressed, is 256 MiB)."""

_AE_CHARS = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # printable ASCII but backslash (PS3.5 AE)


@dataclass(frozen=True)
class Destination:
    """A DICOM peer: its AE title, host and port."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def valid_ae_title(title: str) -> bool:
    """1-16 printable ASCII characters (no backslash), not only spaces."""
    return bool(_AE_CHARS.fullmatch(title)) and bool(title.strip())


def parse_destination(text: str) -> Destination:
    """`AE@host:port` -> Destination; ValueError says which part is wrong."""
    ae, at, rest = text.strip().rpartition("@")
    if not at or not ae:
        raise ValueError("a DICOM destination is AE@host:port, e.g. PACS@10.0.0.5:104")
    if not valid_ae_title(ae):
        raise ValueError("the AE title must be 1-16 printable ASCII characters without a backslash")
    host, colon, port = rest.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("a DICOM destination needs host:port after the @, with a port 1-65535")
    return Destination(ae.strip(), host, int(port))


def parse_root(text: str) -> str:
    """A DICOMweb root `http(s)://host[:port][/path]`, without a trailing slash; ValueError says
    what is wrong. Credentials belong in the settings, never in the URL (it is shown and stored)."""
    root = text.strip().rstrip("/")
    try:
        parts = urlsplit(root)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"a DICOMweb destination is http(s)://host[:port]/path ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a DICOMweb destination is http(s)://host[:port]/path, e.g. https://pacs/dicom-web")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "put no credentials in the DICOMweb URL: set SKINSCREEN_DICOMWEB_TOKEN, or "
            "SKINSCREEN_DICOMWEB_USERNAME and SKINSCREEN_DICOMWEB_PASSWORD"
        )
    if parts.query or parts.fragment:
        raise ValueError("a DICOMweb root has no query or fragment")
    if port == 0:
        raise ValueError("a DICOMweb destination's port must be 1-65535")
    return root


def is_dicomweb(destination: str) -> bool:
    return destination.lower().startswith(("http://", "https://"))


class Settings(BaseSettings):
    """One object built by each entry point and passed down."""

    model_config = SettingsConfigDict(env_prefix="SKINSCREEN_", extra="ignore")

    database_url: str = "sqlite:///skinscreen.db"
    """SQLAlchemy URL; the default is a SQLite file in the working folder (WAL mode)."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    """Celery broker (Redis); unused by the embedded `skinscreen run`."""

    inbox: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """Folders watched by `skinscreen ingest`, separated by commas."""

    batch_size: int = Field(default=32, ge=1, le=1024)
    """Images per model call and per Celery task."""

    batch_wait: float = Field(default=2.0, ge=0)
    """Seconds the ingester waits for a batch to fill before sending a partial one."""

    settle_seconds: float = Field(default=2.0, ge=0)
    """A file is complete once its size and mtime stay unchanged this long."""

    rescan_interval: float = Field(default=300.0, gt=0)
    """Seconds between full rescans of the inbox, which catch lost watchdog events."""

    sweep_after: float = Field(default=900.0, gt=0)
    """An image still queued after this many seconds is enqueued again."""

    model: str = "default"
    """Model name (shipped with the package) or path to a model directory."""

    backend: Literal["auto", "onnx", "onnx-int8", "keras"] = "auto"
    """Inference runtime: auto picks ONNX Runtime on CPU and Keras where a GPU is visible."""

    threads: int | None = Field(default=None, ge=1)
    """Inference threads per process; default: the cores given to this process."""

    visibility_timeout: int = Field(default=3600, ge=1)
    """Seconds before Redis hands an unacknowledged task to another worker."""

    heartbeat_seconds: float = Field(default=5.0, gt=0)
    """A worker renews the heartbeat of the batch it holds this often; the sweeper looks as often."""

    heartbeat_timeout: float = Field(default=20.0, gt=0)
    """A held batch whose heartbeat is this many seconds old belonged to a dead worker: sent again."""

    secret_key: SecretStr | None = None
    """Signs the review page's session cookies; `skinscreen serve` needs one (32+ characters)."""

    heatmap_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """More models (names or directories, separated by commas) whose heatmaps `serve` may draw: a case's
    map always comes from the model version stored with its score (`MODEL` and the shipped models are
    always available)."""

    heatmap_dir: Path | None = None
    """Where Grad-CAM heatmaps are cached; default: `heatmaps/` next to a SQLite file, else ./heatmaps."""

    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    """A review page sign-in lasts this many hours."""

    token_hours: float = Field(default=24.0, gt=0, le=24 * 365)
    """An API bearer token from POST /api/token lasts this many hours."""

    audit_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    """Share of unflagged cases per site drawn (seeded per image) into the review queue, blinded."""
    api_docs: bool = False
    """Serve the interactive API docs (/docs, /redoc: Swagger UI and ReDoc load their scripts from a public
    CDN); /openapi.json is always served."""

    secure_cookies: bool = False
    """Send the session cookie over HTTPS only; turn on behind a TLS-terminating proxy."""

    models_dir: Path | None = None
    """Where `skinscreen models add` installs models; default: models/ beside a SQLite file, else ./models."""

    retention_days: int | None = Field(default=None, ge=0)
    """`skinscreen purge` removes image files of reviewed (or unflagged) cases older than this; unset: off."""

    archive_dir: Path | None = None
    """Where `skinscreen purge` moves image files; unset: the files are deleted."""

    # -- DICOM network and metrics (docs/dicom.md, docs/scaling.md) --
    dicom_ae_title: str = Field(default="SKINSCREEN", min_length=1, max_length=16)
    """This node's AE title: `dicom-listen` answers to it and results are sent from it."""

    dicom_port: int = Field(default=11112, ge=1, le=65535)
    """TCP port `dicom-listen` accepts associations on."""

    dicom_address: str = "0.0.0.0"
    """Address `dicom-listen` binds to."""

    dicom_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Calling AE titles accepted by `dicom-listen`, separated by commas; empty: any."""

    dicom_quiet_seconds: float = Field(default=5.0, ge=0)
    """A received study goes to the inbox once no instance of it has arrived for this long."""

    dicom_max_associations: int = Field(default=32, ge=1, le=1000)
    """Associations `dicom-listen` serves at once; one more is rejected (transient, local limit)."""

    dicom_acse_timeout: float = Field(default=5.0, gt=0, le=300)
    """Seconds a new TCP connection has to request an association before it is dropped."""

    dicom_network_timeout: float = Field(default=60.0, gt=0, le=3600)
    """Seconds an association may stay silent (no PDU) before `dicom-listen` aborts it."""

    dicom_max_store_bytes: int = Field(default=MAX_FILE_BYTES, ge=1024, le=MAX_FILE_BYTES)
    """Largest instance `dicom-listen` stores; a larger C-STORE is answered 0xA700 (out of resources)."""

    dicom_destination: str | None = None
    """Where DICOM results are sent: `AE@host:port` (C-STORE to a PACS) or a DICOMweb root URL."""

    dicomweb_token: SecretStr | None = None
    """Bearer token sent with STOW-RS to a DICOMweb destination; unset: none."""

    dicomweb_username: str | None = None
    """User name for HTTP basic authentication to a DICOMweb destination (with the password)."""

    dicomweb_password: SecretStr | None = None
    """Password for HTTP basic authentication to a DICOMweb destination."""

    dicomweb_ca_bundle: Path | None = None
    """CA certificates (PEM) that an https DICOMweb destination's certificate must chain to."""

    dicomweb_max_request_mb: int = Field(default=512, ge=1)
    """Largest STOW-RS request `serve` takes at /dicom-web/studies, in MiB; larger ones get 413."""

    dicom_outbox: Path | None = None
    """Or a folder DICOM results are written to, when there is no network destination."""

    dicom_institution: str = "skinscreen"
    """Verifying organization named in a VERIFIED SR."""

    export_backoff: float = Field(default=30.0, gt=0)
    """Seconds before the first retry of an unsent result; doubles per attempt."""

    export_backoff_max: float = Field(default=3600.0, gt=0)
    """Longest wait between two attempts at sending a result."""

    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Port for `/metrics` of `ingest`, `worker` and `dicom-listen` (prometheus text); unset: off."""

    metrics_address: str = "127.0.0.1"
    """Address that metrics port binds to."""

    metrics_token: SecretStr | None = None
    """`/metrics` of the review server needs `Authorization: Bearer <token>`; unset: it answers 401."""

    @property
    def dicom_results(self) -> bool:
        """Whether DICOM results are made for DICOM input (a destination or an outbox is set)."""
        return bool(self.dicom_destination or self.dicom_outbox)

    def heatmap_folder(self) -> Path:
        """`heatmap_dir`, or its default next to the SQLite database file."""
        return self.heatmap_dir if self.heatmap_dir is not None else self._beside_database("heatmaps")

    def models_folder(self) -> Path:
        """`models_dir`, or its default next to the SQLite database file."""
        return self.models_dir if self.models_dir is not None else self._beside_database("models")

    def _beside_database(self, name: str) -> Path:
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return Path(url.database).parent / name
        return Path(name)

    @field_validator("secret_key")
    @classmethod
    def _refuse_placeholder_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if secret.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("SKINSCREEN_SECRET_KEY is a placeholder; set a random one")
        if len(secret) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"SKINSCREEN_SECRET_KEY needs at least {MIN_SECRET_KEY_LENGTH} characters")
        return value

    @field_validator("heatmap_models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("dicom_allow", mode="before")
    @classmethod
    def _split_ae_titles(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("dicom_destination")
    @classmethod
    def _check_destination(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if is_dicomweb(value.strip()):
            return parse_root(value)  # raises ValueError with what is wrong
        parse_destination(value)  # raises ValueError with what is wrong
        return value.strip()

    @field_validator("inbox", mode="before")
    @classmethod
    def _split_inbox(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(p.strip()) for p in value.split(",") if p.strip()]
        return value

    @field_validator("database_url", "broker_url")
    @classmethod
    def _refuse_placeholders(cls, value: str) -> str:
        lowered = value.lower()
        for word in PLACEHOLDER_SECRETS:
            if f":{word}@" in lowered:
                raise ValueError(f"the URL carries the placeholder password {word!r}; set a real one")
        return value
