"""The HTML pages: models, model heatmap, head, review queue, search."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup, escape

from describer.errors import HeadmapsError
from describer.maps.patterns import PATTERNS
from evaluation import semantic
from evaluation.relations import find_heads
from evaluation.web import queries
from evaluation.web.api import labels, parse_min_scores, review_item
from evaluation.web.auth import guard_of
from evaluation.web.common import WebError, head_spec, head_url, model_url, render, store_of
from evaluation.web.patterns import head_rows, scale_of, shade, stored_patterns
from evaluation.web.rating import MAX_COMMENT, RatingPost, blind_head, rate, viewer_name
from evaluation.web.report import build_report
from store.labels import CATEGORIES, CATEGORY_MEANINGS, RATING_LABELS

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


def marked(text: str) -> list[tuple[str, bool]]:
    """A snippet split into (text, is_match) pieces at the store's ``[...]`` marks; the template
    escapes each piece, so marks become ``<mark>`` without trusting the text."""
    pieces: list[tuple[str, bool]] = []
    for n, part in enumerate(re.split(r"\[([^\[\]]*)\]", text)):
        if part:
            pieces.append((part, n % 2 == 1))
    return pieces


def heatmap_cells(grid: queries.Grid, colour: list[list[str]], base: str) -> Markup:
    """The heatmap's rows as HTML. Built here rather than in the template because a Jinja loop
    over 5,000 cells dominated the page's time; every text is escaped just the same."""
    base = escape(base)
    parts: list[str] = []
    for layer, row in enumerate(grid.cells):
        parts.append(f'<span class="axis">{layer}</span>')
        for c in row:
            spec = f"{layer}.{c['head']}"
            score = f" ({c['score']:.2f})" if c["score"] is not None else ""
            title = escape(f"{spec}{score}: {c['line'] or 'not described'}")
            parts.append(
                f'<a class="cell" href="{base}/heads/{spec}" style="background:{colour[layer][c["head"]]}" '
                f'data-head="{spec}" title="{title}"></a>'
            )
    return Markup("".join(parts))


@router.get("/", response_class=HTMLResponse)
@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request) -> HTMLResponse:
    return render(request, "models.html", models=store_of(request).list_models())


@router.get("/models/{model:path}/heads/{spec}", response_class=HTMLResponse)
def head_page(request: Request, model: str, spec: str) -> HTMLResponse:
    layer, head = head_spec(spec)
    store = store_of(request)
    viewer = viewer_name(request)
    view = blind_head(store.get_head(model, layer, head), viewer)
    return render(
        request,
        "head.html",
        view=view,
        patterns=head_rows(view.patterns),
        n_heads=queries.head_count(store, model),
        labels=labels(),
        rater=viewer or "",
        saved=request.query_params.get("saved"),
        one_line=queries.one_line,
    )


@router.get("/descriptions/{description_id}")
def description_page(request: Request, description_id: int) -> Response:
    """A description's place on its head's page."""
    d = queries.description_location(store_of(request), description_id)
    return RedirectResponse(
        f"{head_url(d['model'], d['layer'], d['head'])}#d{description_id}", status_code=303
    )


@router.post("/models/{model:path}/heads/{spec}/ratings")
def head_rate(
    request: Request,
    model: str,
    spec: str,
    description_id: int = Form(...),
    rater: str = Form("", max_length=200),
    label: str = Form("", max_length=50),
    comment: str = Form("", max_length=MAX_COMMENT),
    csrf_token: str = Form("", max_length=200),
) -> Response:
    layer, head = head_spec(spec)
    rating = rate(
        request,
        RatingPost(description_id=description_id, rater=rater or None, label=label, comment=comment),
        csrf_token,
        head=(model, layer, head),
    )
    url = f"{head_url(model, layer, head)}?saved={rating.description_id}#d{rating.description_id}"
    return RedirectResponse(url, status_code=303)


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
    html = build_report(store_of(request), model, resamples=200, shown=lambda view: blind_head(view, viewer))
    headers = {"Content-Security-Policy": REPORT_CSP}
    if download:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model)
        headers["Content-Disposition"] = f'attachment; filename="{safe}-report.html"'
    return HTMLResponse(html, headers=headers)


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


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request, model: str = "", after: int = 0) -> Response:
    guard = guard_of(request)
    viewer = guard.viewer(request)
    if viewer.name is None or (request.query_params.get("change") and guard.local_mode()):
        if not guard.local_mode():
            target = "/review" + (f"?{urlencode({'model': model})}" if model else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        return render(request, "review_name.html", model=model, labels=labels(), rater=viewer.name or "")
    item = review_item(store_of(request), viewer.name, model or None, after)
    return render(
        request,
        "review.html",
        item=item,
        rater=viewer.name,
        model=model,
        labels=labels(),
        saved=request.query_params.get("saved"),
        saved_label=request.query_params.get("label"),
        one_line=queries.one_line,
    )


@router.post("/review")
def review_rate(
    request: Request,
    description_id: int = Form(...),
    rater: str = Form("", max_length=200),
    label: str = Form("", max_length=50),
    comment: str = Form("", max_length=MAX_COMMENT),
    model: str = Form("", max_length=300),
    csrf_token: str = Form("", max_length=200),
) -> Response:
    rating = rate(
        request,
        RatingPost(description_id=description_id, rater=rater or None, label=label, comment=comment),
        csrf_token,
    )
    query = {"after": description_id, "saved": description_id, "label": rating.label}
    if model:
        query["model"] = model
    return RedirectResponse(f"/review?{urlencode(query)}", status_code=303)


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request) -> HTMLResponse:
    params = request.query_params
    q = params.get("q", "")
    store = store_of(request)
    models = [m.name for m in store.list_models()]
    form = {
        key: params.get(key, "")
        for key in (
            "model",
            "category",
            "layer_min",
            "layer_max",
            "op",
            "min_score",
            "label",
            "unclear",
            "mode",
            "relation",
            "min_fraction",
        )
    }
    result, error = None, None
    try:
        layers = [int(form[k]) if form[k].strip() else None for k in ("layer_min", "layer_max")]
    except ValueError:
        layers, error = [None, None], "layers must be whole numbers"
    min_scores: dict[str, float] = {}
    if form["op"] and form["min_score"]:
        min_scores = parse_min_scores([f"{form['op']}={form['min_score']}"])
    min_scores, min_patterns = semantic.split_min_scores(min_scores)
    mode = form["mode"] if form["mode"] in ("fulltext", "semantic", "hybrid") else "hybrid"
    relation = form["relation"].strip() or None
    fraction, related = 0.0, None
    try:
        fraction = float(form["min_fraction"]) if form["min_fraction"].strip() else 0.0
    except ValueError:
        error = f"the minimum fraction must be a number between 0 and 1, not {form['min_fraction']!r}"
    if relation is not None and error is None and not q.strip():
        try:
            related = find_heads(
                store, relation, model=form["model"] or None, min_fraction=fraction, limit=200
            )
        except HeadmapsError as exc:
            error = str(exc)
    if q.strip() and error is None:
        filters = semantic.Filters(
            model=form["model"] or None,
            category=form["category"] or None,
            layer_min=layers[0],
            layer_max=layers[1],
            min_scores=min_scores,
            min_patterns=min_patterns,
            label=form["label"] or None,
            unclear={"yes": True, "no": False}.get(form["unclear"]),
            relation=relation,
            min_fraction=fraction,
        )
        try:
            result = semantic.search(store, q, filters, limit=50, mode=mode)
        except HeadmapsError as exc:
            error = str(exc)
    operations = sorted({name for m in models for name in queries.operations_of(store, m)})
    return render(
        request,
        "search.html",
        q=q,
        form=form,
        mode=mode,
        models=models,
        operations=operations,
        patterns=stored_patterns(store),
        categories=CATEGORIES,
        category_meanings=CATEGORY_MEANINGS,
        rating_labels=RATING_LABELS,
        result=result,
        related=related,
        relation_keys=store.relation_keys(),
        error=error,
        marked=marked,
    )
