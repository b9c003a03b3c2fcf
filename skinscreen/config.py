"""Settings: every SKINSCREEN_* environment variable is read here and nowhere else."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

PLACEHOLDER_SECRETS = {"changethis", "change-me", "secret", "password"}
MIN_SECRET_KEY_LENGTH = 32


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

    dicom_destination: str | None = None
    """Where DICOM results are sent by C-STORE: `AE@host:port` (a PACS)."""

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
        from skinscreen.dicomnet.address import parse_destination

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
