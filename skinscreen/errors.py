"""Errors raised by skinscreen.

SkinScreenError
 ├── ConfigError           bad or missing settings
 ├── UnreadableImageError  a file that cannot be turned into pixels (stored as a failed result)
 ├── FileChangedError      a case's file no longer has the sha256 that was scored
 ├── ModelError            a model directory that cannot be loaded or used
 │    └── ModelUnavailableError  the model version a stored score names is not here
 ├── DatasetError          a training or evaluation folder without the expected layout
 └── CalibrationError      a site calibration the sample cannot support, or an unknown site
"""

from __future__ import annotations


class SkinScreenError(Exception):
    """Base class of every error skinscreen raises on purpose."""


class ConfigError(SkinScreenError):
    """Raised when a setting is missing, malformed or a refused placeholder."""


class UnreadableImageError(SkinScreenError):
    """Raised when a file cannot be decoded into an RGB image; `reason` says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FileChangedError(SkinScreenError):
    """Raised when a case's file no longer has the sha256 that was scored (replaced or swapped)."""


class ModelError(SkinScreenError):
    """Raised when a model directory is missing, incomplete or inconsistent."""


class ModelUnavailableError(ModelError):
    """Raised when the model version stored with a score is not available to explain it (Grad-CAM)."""

    def __init__(self, version: str) -> None:
        super().__init__(f"the model that scored this case ({version}) is not available on this server")
        self.version = version


class DatasetError(SkinScreenError):
    """Raised when a data folder lacks the benign/ and malignant/ layout or has no images."""


class CalibrationError(SkinScreenError):
    """Raised when a site calibration is refused: a sample too small for the asked sensitivity, or no data."""
