"""A model's page: its layer × head heatmap, coloured by description category, rating,
operation score or attention pattern, and the heads found by a relation."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from describer.maps.patterns import PATTERNS
from evaluation.relations import find_heads
from evaluation.web import queries
from evaluation.web.common import WebError, head_name, model_url, render, store_of
from evaluation.web.patterns import scale_of, shade, stored_patterns
from evaluation.web.rating import viewer_name

router = APIRouter(include_in_schema=False)

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
EMPTY = "#f1f1f1"


def _blue(t: float) -> str:
    low, high = (247, 251, 255), (8, 48, 107)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(low, high, strict=True))


BLUES = [_blue(i / 100) for i in range(101)]


def blues(value: float | None) -> str:
    """A sequential colour for a score in [0, 1] (white to dark blue), in 101 steps."""
    if value is None:
        return EMPTY
    return BLUES[round(min(max(value, 0.0), 1.0) * 100)]


def heatmap_cells(grid: queries.Grid, colour: list[list[str]], base: str) -> Markup:
    """The heatmap's rows as HTML. Built here rather than in the template because a Jinja loop
    over 5,000 cells dominated the page's time; every text is escaped just the same."""
    base = escape(base)
    parts: list[str] = []
    for layer, row in enumerate(grid.cells):
        parts.append(f'<span class="axis">{layer}</span>')
        for c in row:
            spec = head_name(layer, c["head"])
            score = f" ({c['score']:.2f})" if c["score"] is not None else ""
            title = escape(f"{spec}{score}: {c['line'] or 'not described'}")
            parts.append(
                f'<a class="cell" href="{base}/heads/{spec}" style="background:{colour[layer][c["head"]]}" '
                f'data-head="{spec}" title="{title}"></a>'
            )
    return Markup("".join(parts))


def _fraction(text: str) -> float:
    """A page's ``min_fraction`` field (empty: 0)."""
    try:
        return float(text) if text.strip() else 0.0
    except ValueError:
        raise WebError(422, f"the minimum fraction must be a number between 0 and 1, not {text!r}") from None


@router.get("/models/{model:path}", response_class=HTMLResponse)
def model_page(
    request: Request,
    model: str,
    by: str = "",
    op: str = "",
    pattern: str = "",
    relation: str = "",
    min_fraction: str = "",
) -> HTMLResponse:
    store = store_of(request)
    ops = queries.operations_of(store, model)
    relation = relation.strip()
    related = (
        find_heads(store, relation, model=model, min_fraction=_fraction(min_fraction), limit=None)
        if relation
        else None
    )
    if not by and pattern:
        by = "pattern"
    if not by:
        by = "category" if queries.has_descriptions(store, model) or not ops else "operation"
    if by not in ("category", "rating", "operation", "pattern"):
        raise WebError(422, f"colour by category, rating or operation, or by pattern, not {by!r}")
    operation = chosen = None
    if by == "operation":
        if not ops:
            raise WebError(404, f"no operation scores stored for {model}")
        operation = op or ops[0]
    if by == "pattern":
        stored = stored_patterns(store, model)
        if not stored:
            raise WebError(
                404, f"no attention-pattern scores stored for {model}; run: headmaps analyze {model}"
            )
        chosen = pattern or stored[0]
    grid = queries.grid(store, model, operation, chosen, viewer=viewer_name(request))
    meaning = PATTERNS.get(chosen or "")
    if by == "pattern":
        scale = scale_of(
            grid.pattern, [c["score"] for row in grid.cells for c in row if c["score"] is not None]
        )
        colour = [[blues(shade(c["score"], scale)) for c in row] for row in grid.cells]
        unit = f" {meaning.unit}" if meaning and meaning.unit != "fraction" else ""
        legend = [("0", blues(0.0)), (f"{scale / 2:.2g}", blues(0.5)), (f"{scale:.3g}{unit}", blues(1.0))]
        legend.append(("no score", EMPTY))
    elif by == "operation":
        colour = [[blues(c["score"]) for c in row] for row in grid.cells]
        legend = [("0", blues(0.0)), ("0.5", blues(0.5)), ("1", blues(1.0)), ("no score", EMPTY)]
    elif by == "rating":
        colour = [[RATING_COLOURS.get(c["rating"] or "", EMPTY) for c in row] for row in grid.cells]
        legend = [*RATING_COLOURS.items(), ("not rated", EMPTY)]
    else:
        colour = [[CATEGORY_COLOURS.get(c["category"] or "", EMPTY) for c in row] for row in grid.cells]
        legend = [*CATEGORY_COLOURS.items(), ("not described", EMPTY)]
    cells = [c for row in grid.cells for c in row]
    counts = {
        "described": sum(c["description_id"] is not None for c in cells),
        "rated": sum(c["ratings"] > 0 for c in cells),
        "unclear": sum(c["unclear"] for c in cells),
    }
    return render(
        request,
        "model.html",
        cells_html=heatmap_cells(grid, colour, model_url(model)),
        counts=counts,
        grid=grid,
        colour=colour,
        legend=legend,
        by=by,
        op=operation,
        pattern=chosen,
        meaning=meaning,
        base=model_url(model),
        relation=relation,
        min_fraction=min_fraction,
        related=related,
        relation_keys=store.relation_keys(model),
    )
