"""Operations over a running deployment: shadow re-scoring, comparison, promotion."""

from __future__ import annotations

from skinscreen.ops.compare import Comparison, compare_versions
from skinscreen.ops.promotion import promote, promotion_history, sites_to_recalibrate
from skinscreen.ops.rescore import rescore, rescore_targets, summary

__all__ = [
    "Comparison",
    "compare_versions",
    "promote",
    "promotion_history",
    "rescore",
    "rescore_targets",
    "sites_to_recalibrate",
    "summary",
]
