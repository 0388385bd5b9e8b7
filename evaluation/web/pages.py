"""The HTML pages that are neither a model's heatmap nor a head, review or search page: the
model list and the self-contained report. Each page family has its own module and router
(``heatmap``, ``head_pages``, ``review_pages``, ``search_page``); ``app`` includes them."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from evaluation.web.common import render, store_of
from evaluation.web.rating import blind_head, viewer_name
from evaluation.web.report import build_report

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request) -> HTMLResponse:
    return render(request, "models.html", models=store_of(request).list_models())


# The report is one self-contained file with its own inline script and style (it is meant to be
# saved and opened anywhere), so it gets its own policy: nothing may be loaded from anywhere.
REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@router.get("/models/{model:path}/report", response_class=HTMLResponse)
def report_page(request: Request, model: str, download: bool = False) -> HTMLResponse:
    """The model's self-contained HTML report (``headmaps report``), served or downloaded."""
    viewer = viewer_name(request)
    html = build_report(
        store_of(request),
        model,
        resamples=200,
        shown=lambda view: blind_head(view, viewer),
        blind=True,
        viewer=viewer,
    )
    headers = {"Content-Security-Policy": REPORT_CSP}
    if download:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model)
        headers["Content-Disposition"] = f'attachment; filename="{safe}-report.html"'
    return HTMLResponse(html, headers=headers)
