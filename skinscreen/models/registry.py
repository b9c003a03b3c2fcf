"""The one registry of models: which folder holds a version, shipped or installed, and its card.

A model directory holds `card.json` (version, threshold, input size) and the runtimes' files. A
deployment has the models shipped with the package and those installed with `skinscreen models add`:
an installed model is a copy of an exported model directory (`skinscreen export`) under the models
folder (SKINSCREEN_MODELS_DIR), named by its version, installed only when its card reads and every
file its card lists under `files` is present with the SHA-256 the card records.

The model in force is the promoted version (the database says which: `skinscreen.db.promotions`);
before any promotion, SKINSCREEN_MODEL. This module resolves either to a folder; it reads no database.

`models add` refuses a source file that is a symlink (a link to /etc/shadow must not be copied in),
caps the card and the texts beside it at MAX_TEXT_BYTES, and refuses a version with control
characters (terminal escape codes) or over 100 characters.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from skinscreen.checksum import sha256_file
from skinscreen.config import Settings
from skinscreen.errors import ModelError

logger = logging.getLogger(__name__)

SHIPPED = "shipped"
"""The package folder (under skinscreen/models) that holds the shipped model directories."""


@dataclass(frozen=True)
class ModelCard:
    """What a scorer needs to know about a model: its name, contract and operating point."""

    version: str
    threshold: float
    input_size: int
    path: Path
    data: dict[str, Any]
    tta: str = "none"


def read_card(model_dir: Path) -> ModelCard:
    """Read and check card.json."""
    try:
        data = json.loads((model_dir / "card.json").read_text())
        return ModelCard(
            version=str(data["version"]),
            threshold=float(data["threshold"]),
            input_size=int(data["input_size"]),
            path=model_dir,
            data=data,
            tta=str(data.get("tta", "none")),
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{model_dir} has no valid card.json: {exc}") from exc


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A shipped model name (`default`) or a path to a model directory."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    shipped = shipped_folder() / str(name_or_path)
    if shipped.is_dir():
        return shipped
    raise ModelError(f"no model named {name_or_path!r}: not a shipped model and not a directory")


MODEL_FILES = ("model.onnx", "model.keras")
"""An installed model needs at least one of these (the runtimes' inputs)."""
TEXT_FILES = ("card.json", "MODEL_CARD.md", "history.json")
MAX_TEXT_BYTES = 1 << 20
"""The largest card.json, MODEL_CARD.md or history.json `models add` takes (1 MiB)."""
MAX_VERSION_LENGTH = 100  # the database's model_version columns


# Network passes an image costs under each test-time augmentation of the card ("none": one pass).
VIEWS = {"none": 1, "flip4": 4, "dihedral8": 8}


@dataclass(frozen=True)
class InstalledModel:
    """A model directory a deployment can score with, and where it came from."""

    card: ModelCard
    source: str  # "shipped" or "installed"

    def summary(self) -> dict[str, Any]:
        """Version, threshold, views and the card's test figures, for `skinscreen models`."""
        test = self.card.data.get("test") or {}
        at = (test.get("all") or {}).get("at_threshold") or {}
        return {
            "version": self.card.version,
            "source": self.source,
            "threshold": self.card.threshold,
            "views": VIEWS.get(self.card.tta, self.card.tta),
            "input_size": self.card.input_size,
            "test_images": (test.get("all") or {}).get("n"),
            "test_auc": (test.get("all") or {}).get("roc_auc"),
            "test_sensitivity": at.get("sensitivity"),
            "test_specificity": at.get("specificity"),
            "path": str(self.card.path),
        }


def shipped_folder() -> Path:
    return Path(str(resources.files("skinscreen.models").joinpath(SHIPPED)))


def _cards_under(folder: Path, source: str) -> list[InstalledModel]:
    if not folder.is_dir():
        return []
    found = []
    for child in sorted(folder.iterdir()):
        if not child.name.startswith(".") and (child / "card.json").is_file():
            try:
                found.append(InstalledModel(read_card(child), source))
            except ModelError as exc:
                logger.warning("skipping %s: %s", child, exc)
    return found


def shipped_models() -> list[InstalledModel]:
    """The models shipped inside the package, sorted by folder name."""
    return _cards_under(shipped_folder(), "shipped")


def list_models(models_folder: Path) -> list[InstalledModel]:
    """Shipped models first, then the installed ones, each sorted by folder name."""
    return shipped_models() + _cards_under(models_folder, "installed")


def find_model(version: str, models_folder: Path, *, default: str | None = None) -> Path:
    """The directory of the model with this version (or shipped name, or a directory path).

    Installed models come first, then the shipped ones, then `default` (SKINSCREEN_MODEL, which may
    be a directory outside both) when its card has this version.
    """
    found = list_models(models_folder)
    for model in found:
        if version in (model.card.version, model.card.path.name) and model.source == "installed":
            return model.card.path
    for model in found:
        if version in (model.card.version, model.card.path.name):
            return model.card.path
    if default is not None:
        try:
            default_dir = resolve_model_dir(default)
            if read_card(default_dir).version == version:
                return default_dir
        except ModelError:
            pass
    if Path(version).is_dir():
        return Path(version)
    raise ModelError(f"no model {version!r}: not shipped, not installed in {models_folder}, not a directory")


def model_in_force(promoted: str | None, *, settings: Settings) -> Path:
    """The folder of the model in force: the promoted version, or SKINSCREEN_MODEL before any promotion."""
    if promoted is None:
        return resolve_model_dir(settings.model)
    return find_model(promoted, settings.models_folder(), default=settings.model)


def check_files(model_dir: Path, card: ModelCard) -> dict[str, str]:
    """Every file the card lists, with its checked SHA-256; raises ModelError on the first problem."""
    files = card.data.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelError(f"{model_dir}/card.json lists no files with their sha256; re-export the model")
    if not any(name in files for name in MODEL_FILES):
        raise ModelError(f"{model_dir}/card.json lists neither {' nor '.join(MODEL_FILES)}")
    checked = {}
    for name, entry in sorted(files.items()):
        expected = entry.get("sha256") if isinstance(entry, dict) else entry
        path = model_dir / name
        if Path(name).name != name:
            raise ModelError(f"card.json names a file outside the model folder: {name!r}")
        if not path.is_file():
            raise ModelError(f"{name} is listed in card.json but missing from {model_dir}")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelError(f"{name}: sha256 {actual[:12]}… does not match the card's {str(expected)[:12]}…")
        checked[name] = actual
    return checked


def _check_source(source: Path, names: list[str]) -> None:
    """Refuse symlinks among the files to copy, and texts over MAX_TEXT_BYTES."""
    for name in names:
        path = source / name
        if path.is_symlink():
            raise ModelError(f"{name} in {source} is a symlink; copy the file itself into the model folder")
        if name in TEXT_FILES and path.is_file() and path.stat().st_size > MAX_TEXT_BYTES:
            raise ModelError(f"{name} is over {MAX_TEXT_BYTES} bytes; not a model card")


def _check_version(version: str) -> None:
    if not version.isprintable() or not version.strip() or len(version) > MAX_VERSION_LENGTH:
        raise ModelError(
            f"the card's version {ascii(version[:MAX_VERSION_LENGTH])} must be 1-{MAX_VERSION_LENGTH} "
            "printable characters (no control characters)"
        )


def install_model(source: Path, models_folder: Path) -> InstalledModel:
    """Check `source` (card, file hashes) and copy it to `models_folder/<version>`, atomically."""
    _check_source(source, ["card.json"])
    card = read_card(source)
    _check_version(card.version)
    files = card.data.get("files")
    _check_source(source, [*(files if isinstance(files, dict) else {}), "MODEL_CARD.md", "history.json"])
    if not (0.0 < card.threshold < 1.0) or card.input_size < 16:
        raise ModelError(f"{source}/card.json has an implausible threshold or input size")
    check_files(source, card)
    if any(m.card.version == card.version for m in shipped_models()):
        raise ModelError(f"version {card.version} is a shipped model; give the new model its own version")
    # No separators, and no leading dot: ".." must not name the parent, ".x" not hide the model.
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in card.version).lstrip(".") or "model"
    target = models_folder / safe
    if target.exists():
        installed = read_card(target)
        if installed.data.get("files") == card.data.get("files"):
            logger.info("model %s is already installed", card.version)
            return InstalledModel(installed, "installed")
        raise ModelError(f"another model with version {card.version} is installed at {target}")
    models_folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{safe}.", dir=models_folder))
    try:
        for name in card.data["files"]:
            shutil.copy2(source / name, staging / name)
        for extra in ("MODEL_CARD.md", "history.json"):
            if (source / extra).is_file():
                shutil.copy2(source / extra, staging / extra)
        (staging / "card.json").write_text(json.dumps(card.data, indent=1))
        check_files(staging, read_card(staging))  # the copy, not only the source
        staging.chmod(0o755)  # mkdtemp's 0700 would keep workers running as another user out
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("installed model %s in %s", card.version, target)
    return InstalledModel(read_card(target), "installed")
