"""Operations over a running deployment: installed models, shadow re-scoring, comparison, promotion."""

from __future__ import annotations

from skinscreen.ops.compare import Comparison, compare_versions
from skinscreen.ops.promotion import active_version, promote, promotion_history, sites_to_recalibrate
from skinscreen.ops.registry import InstalledModel, find_model, install_model, list_models
from skinscreen.ops.rescore import rescore, rescore_targets, summary

__all__ = [
    "Comparison",
    "InstalledModel",
    "active_version",
    "compare_versions",
    "find_model",
    "install_model",
    "list_models",
    "promote",
    "promotion_history",
    "rescore",
    "rescore_targets",
    "sites_to_recalibrate",
    "summary",
]
