"""What the pipeline did, in one tally: the ingester counts files, scoring counts results, `run` adds both."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Protocol


class _Result(Protocol):
    @property
    def probability(self) -> float | None: ...

    @property
    def flagged(self) -> bool | None: ...

    @property
    def reason(self) -> str | None: ...


@dataclass
class Counts:
    """Files seen, new, duplicate or refused (registration); images scored, flagged, failed by reason or
    skipped as already done (scoring)."""

    seen: int = 0
    new: int = 0
    duplicate: int = 0
    refused: int = 0
    scored: int = 0
    flagged: int = 0
    failed: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        """Add another tally to this one (a batch's to a run's)."""
        for f in fields(self):
            if f.name != "reasons":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count

    def add_result(self, result: _Result) -> None:
        """Count one scoring result: scored (and maybe flagged), or failed with its reason."""
        if result.probability is None:
            self.failed += 1
            reason = result.reason or "unknown"
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
        else:
            self.scored += 1
            self.flagged += int(bool(result.flagged))

    def files(self) -> dict[str, Any]:
        """The registration counts alone (what `skinscreen ingest` prints)."""
        return {"seen": self.seen, "new": self.new, "duplicate": self.duplicate, "refused": self.refused}
