"""A model's page: its layer × head heatmap, coloured by description category, rating,
operation score (relation or suppression) or attention pattern, with a colour bar, the top
heads of a scored view, its downloads (``format=csv|json``), and the heads found by a relation.
The overview (``overview``) is included first: ``/models/{model:path}`` would swallow it."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict

from describer.heads import head_name
from describer.maps.patterns import PATTERNS
from evaluation.relations import find_heads
from evaluation.web import overview, queries
from evaluation.web.common import WebError, model_url, render, store_of
from evaluation.web.exports import check_format, table_response
from evaluation.web.heatmap_svg import SCALES, Scale, fit, gradient, heatmap_svg, sequential
from evaluation.web.patterns import stored_patterns
from evaluation.web.rating import viewer_name
from store import Store

router = APIRouter(include_in_schema=False)
router.include_router(overview.router)

CATEGORY_COLOURS = {
    "knowledge_recalling": "#4e79a7",
    "in_context_identification": "#f28e2b",
    "latent_reasoning": "#59a14f",
    "expression_preparation": "#b07aa1",
    "unclear": "#bab0ac",
}
RATING_COLOURS = {
    "plausible": "#2e7d32",
    "partially_plausible": "#f9a825",
    "not_plausible": "#c62828",
    "cannot_tell": "#9e9e9e",
}
TOP_CHOICES = (10, 20, 50, 100)
HEATMAP_COLUMNS = ["name", "layer", "head", "score", "category", "description"]
TOP_COLUMNS = ["rank", "name", "layer", "head", "score", "category", "description"]


class View(BaseModel):
    """What one model page shows: the grid, each cell's colour, and for a scored view its
    scale and its heads ranked by score."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    grid: queries.Grid
    by: str
    colours: list[list[str | None]]
    shades: list[list[float | None]] | None = None
    scale: Scale | None = None
    ranked: list[dict] = []
    """Scored cells, highest first (ties by layer, then head)."""


def _fraction(text: str) -> float:
    """A page's ``min_fraction`` field (empty: 0)."""
    try:
        return float(text) if text.strip() else 0.0
    except ValueError:
        raise WebError(422, f"the minimum fraction must be a number between 0 and 1, not {text!r}") from None


def build_view(
    store: Store,
    model: str,
    by: str,
    operation: str,
    metric: str,
    pattern: str,
    scale: str,
    viewer: str | None,
) -> View:
    """The page's view; a bad choice is one clear 404 or 422."""
    if metric not in queries.METRICS:
        raise WebError(422, f"metric must be relation or suppression, not {metric!r}")
    if scale not in SCALES:
        raise WebError(422, f"scale must be fitted or shared, not {scale!r}")
    ops = queries.operations_of(store, model)
    if not by:
        by = "pattern" if pattern else "operation" if operation else ""
    if not by:
        by = "category" if queries.has_descriptions(store, model) or not ops else "operation"
    if by not in ("category", "rating", "operation", "pattern"):
        raise WebError(422, f"colour by category, rating or operation, or by pattern, not {by!r}")
    chosen_op = chosen_pattern = None
    if by == "operation":
        if not ops:
            raise WebError(404, f"no operation scores stored for {model}")
        chosen_op = operation or ops[0]
    if by == "pattern":
        stored = stored_patterns(store, model)
        if not stored:
            raise WebError(
                404, f"no attention-pattern scores stored for {model}; run: headmaps analyze {model}"
            )
        chosen_pattern = pattern or stored[0]
    grid = queries.grid(store, model, chosen_op, chosen_pattern, viewer=viewer, metric=metric)
    if by == "rating":
        colours = [[RATING_COLOURS.get(c["rating"] or "") for c in row] for row in grid.cells]
        return View(grid=grid, by=by, colours=colours)
    if by == "category":
        colours = [[CATEGORY_COLOURS.get(c["category"] or "") for c in row] for row in grid.cells]
        return View(grid=grid, by=by, colours=colours)
    ranked = [c for row in grid.cells for c in row if c["score"] is not None]
    ranked.sort(key=lambda c: (-c["score"], c["layer"], c["head"]))
    fitted = fit(
        [c["score"] for c in ranked],
        scale,
        operation=chosen_op,
        metric=metric,
        pattern=chosen_pattern,
        k=grid.k,
        n_pairs=grid.n_pairs,
    )
    shades = [[fitted.shade(c["score"]) for c in row] for row in grid.cells]
    colours = [[sequential(t) for t in row] for row in shades]
    return View(grid=grid, by=by, colours=colours, shades=shades, scale=fitted, ranked=ranked)


def _row(c: dict) -> dict:
    return {
        "name": head_name(c["layer"], c["head"]),
        "layer": c["layer"],
        "head": c["head"],
        "score": c["score"],
        "category": c["category"],
        "description": c["line"],
    }


def download(view: View, table: str, fmt: str, top: int) -> Response:
    """The heatmap's every cell, or the top-heads table, as CSV or JSON."""
    check_format(fmt)
    grid = view.grid
    what = grid.operation and f"{grid.operation}-{grid.metric}" or grid.pattern or view.by
    if table == "top":
        if view.scale is None:
            raise WebError(422, "the top-heads table needs a scored view: by=operation or by=pattern")
        rows = [{"rank": i + 1, **_row(c)} for i, c in enumerate(view.ranked[:top])]
        return table_response(rows, TOP_COLUMNS, fmt, f"{grid.model}-{what}-top{top}")
    rows = [_row(c) for row in grid.cells for c in row]
    return table_response(rows, HEATMAP_COLUMNS, fmt, f"{grid.model}-{what}-heatmap")


@router.get("/models/{model:path}", response_class=HTMLResponse)
def model_page(
    request: Request,
    model: str,
    by: str = "",
    operation: str = "",
    metric: str = "relation",
    pattern: str = "",
    scale: str = "fitted",
    values: str = "",
    top: int = Query(default=20, ge=1, le=1000),
    relation: str = "",
    min_fraction: str = "",
    format: str = "",  # noqa: A002 - the shared download parameter's name
    table: str = "heatmap",
) -> Response:
    if values not in ("", "0", "1"):
        raise WebError(422, f"values must be 1 (show each cell's score) or 0, not {values!r}")
    if table not in ("heatmap", "top"):
        raise WebError(422, f"table must be heatmap or top, not {table!r}")
    store = store_of(request)
    view = build_view(store, model, by, operation, metric, pattern, scale, viewer_name(request))
    if format:
        return download(view, table, format, top)
    relation = relation.strip()
    related = (
        find_heads(store, relation, model=model, min_fraction=_fraction(min_fraction), limit=None)
        if relation
        else None
    )
    grid = view.grid
    if view.by == "rating":
        legend = [*RATING_COLOURS.items(), ("not rated", None)]
    elif view.by == "category":
        legend = [*CATEGORY_COLOURS.items(), ("not described", None)]
    else:
        legend = []
    cells = [c for row in grid.cells for c in row]
    counts = {
        "described": sum(c["description_id"] is not None for c in cells),
        "rated": sum(c["ratings"] > 0 for c in cells),
        "unclear": sum(c["unclear"] for c in cells),
    }
    state = {"by": view.by, "metric": grid.metric, "scale": view.scale.mode if view.scale else scale}
    if grid.operation:
        state["operation"] = grid.operation
    if grid.pattern:
        state["pattern"] = grid.pattern
    return render(
        request,
        "model.html",
        heatmap_svg=heatmap_svg(
            grid.cells,
            view.colours,
            model_url(model),
            scored=view.scale is not None,
            shades=view.shades,
            values=values == "1" and view.scale is not None,
        ),
        counts=counts,
        grid=grid,
        legend=legend,
        by=view.by,
        operation=grid.operation,
        metric=grid.metric,
        pattern=grid.pattern,
        meaning=PATTERNS.get(grid.pattern or ""),
        scale=view.scale,
        scale_mode=state["scale"],
        gradient=gradient(),
        values=values == "1",
        top=top,
        top_choices=sorted({*TOP_CHOICES, top}),
        ranked=view.ranked[:top],
        n_scored=len(view.ranked),
        state=state,
        base=model_url(model),
        relation=relation,
        min_fraction=min_fraction,
        related=related,
        relation_keys=store.relation_keys(model),
    )
