"""skinscreen: batch screening of dermoscopy images with a MobileNetV2 classifier."""

from __future__ import annotations

__version__ = "0.1.0"
