"""Sites: each hospital's own operating point, the blinded audit sample's estimates, and drift per batch.

`stats` and `drift` are numpy only (the review server uses them); `calibration` scores a labelled
sample through the one scoring path; `report` puts the database's numbers together for admins.
"""

from __future__ import annotations

from skinscreen.sites.drift import DriftCheck, Reference, check_batch
from skinscreen.sites.stats import SiteEstimate, site_estimate, wilson

__all__ = ["DriftCheck", "Reference", "SiteEstimate", "check_batch", "site_estimate", "wilson"]
