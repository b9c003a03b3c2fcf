"""Admin pages and API for sites: operating points, estimated real performance, score plots, drift."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from skinscreen.db import sites as db_sites
from skinscreen.db.cases import Label
from skinscreen.review.auth import DB, ApiAdmin, PageAdmin, context
from skinscreen.review.plots import score_histogram_svg
from skinscreen.review.routes_pages import render
from skinscreen.sites.report import ModelInfo, batch_drift, in_force_info, site_rows, site_scores

logger = logging.getLogger(__name__)

router = APIRouter()
SiteName = Annotated[Label, Query(description="the site (first folder level under the inbox)")]


def _model(request: Request, session: Session) -> ModelInfo:
    """The model in force: the promoted version, else SKINSCREEN_MODEL (read per request)."""
    return in_force_info(session, settings=context(request).settings)


@router.get("/api/sites", tags=["admin"])
def list_sites(admin: ApiAdmin, session: DB, request: Request) -> list[dict[str, Any]]:
    """Each site: counts, flag rate, threshold in force with its evidence, estimated sensitivity,
    specificity and PPV (weighted by the audit sample) with 95 % intervals."""
    return site_rows(session, model=_model(request, session))


@router.get("/api/drift", tags=["admin"])
def list_drift(admin: ApiAdmin, session: DB, request: Request) -> list[dict[str, Any]]:
    """Per batch: flag rate against its expected 99 % range, PSI against the reference, and the warning."""
    return batch_drift(session, model=_model(request, session))


@router.get("/sites", include_in_schema=False)
def sites_page(request: Request, admin: PageAdmin, session: DB) -> HTMLResponse:
    rows = site_rows(session, model=_model(request, session))
    return render(request, "sites.html", {"sites": rows}, user=admin)


@router.get("/sites/view", include_in_schema=False)
def site_page(request: Request, admin: PageAdmin, session: DB, name: SiteName) -> HTMLResponse:
    model = _model(request, session)
    if name not in db_sites.known_sites(session):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such site.")
    row = next(r for r in site_rows(session, model=model) if r["site"] == name)
    plot = score_histogram_svg(site_scores(session, site=name, model=model), threshold=row["threshold"])
    drift = [d for d in batch_drift(session, model=model) if d["site"] == name]
    return render(
        request, "site.html", {"site": row, "plot": plot, "drift": drift, "model": model}, user=admin
    )
