"""One self-contained HTML page per model: heatmaps, correlation table, and every head.

Everything comes from the store. The page has no external resources (inline CSS and
JavaScript), so it can be mailed or archived as one file. LLM text is untrusted: it is
rendered by Jinja2 with autoescaping, and the data the page's script filters on is read from
the escaped DOM, never injected as markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel

from describer.errors import HeadmapsError
from describer.maps.patterns import PATTERNS, notable_patterns
from evaluation.ratings import RatingsReport, cached_ratings_report
from evaluation.web.common import token_html
from evaluation.web.patterns import PatternGrid, pattern_grid, stored_patterns
from store import Store
from store.labels import CATEGORIES, CATEGORY_MEANINGS, RATING_LABELS, RATING_MEANINGS
from store.records import HeadView, ModelSummary, RunOut

CORRELATION = "correlation"
"""``settings["experiment"]`` of an evaluate run whose ``counts`` hold a correlation table."""


class Heatmap(BaseModel):
    operation: str
    category: str
    k: int
    max_score: float
    cells: list[list[tuple[float | None, str]]]
    """``[layer][head]`` (score or None, background colour)."""


def _colour(value: float | None, top: float) -> str:
    """White to deep blue, on the operation's own scale (its best head is darkest)."""
    if value is None or top <= 0:
        return "#f4f4f4"
    t = max(0.0, min(1.0, value / top))
    r, g, b = (int(255 + (c - 255) * t) for c in (20, 70, 160))
    return f"#{r:02x}{g:02x}{b:02x}"


def _heatmaps(store: Store, model: ModelSummary, heads: list[HeadView]) -> list[Heatmap]:
    meta = {}
    for view in heads:
        for op in view.operations:
            meta.setdefault(op.name, (op.category, op.k))
    maps = []
    for name, (category, k) in sorted(meta.items(), key=lambda kv: (kv[1][0], kv[0])):
        grid = store.operation_grid(model.name, name)
        values = [v for row in grid for v in row if not math.isnan(v)]
        top = max(values, default=0.0)
        cells = [
            [(None if math.isnan(v) else v, _colour(None if math.isnan(v) else v, top)) for v in row]
            for row in grid
        ]
        maps.append(Heatmap(operation=name, category=category, k=k, max_score=top, cells=cells))
    return maps


class PatternMap(BaseModel):
    grid: PatternGrid
    cells: list[list[tuple[float | None, str]]]
    """``[layer][head]`` (score or None, background colour), on the pattern's own scale."""


def _pattern_maps(store: Store, model: str) -> list[PatternMap]:
    maps = []
    for name in stored_patterns(store, model):
        if name not in PATTERNS:
            continue  # measured by a newer headmaps: its meaning is not known here
        grid = pattern_grid(store, model, name, top=5)
        cells = [[(v, _colour(v, grid.scale)) for v in row] for row in grid.scores]
        maps.append(PatternMap(grid=grid, cells=cells))
    return maps


def latest_correlation(store: Store, model: str) -> RunOut | None:
    """The newest finished correlation experiment stored for ``model``, if any."""
    runs = [
        run
        for run in store.list_runs(kind="evaluate", model=model)
        if run.status == "done" and run.settings.get("experiment") == CORRELATION and run.counts.get("rows")
    ]
    return runs[-1] if runs else None


def build_report(
    store: Store,
    model: str,
    *,
    resamples: int = 500,
    shown: Callable[[HeadView], HeadView] | None = None,
    blind: bool = False,
    viewer: str | None = None,
) -> str:
    """Render the report of ``model`` as one HTML string; ``shown`` filters each head's view
    (the web app's blind review hides ratings its viewer has not earned); ``blind``: the
    ratings' aggregate tables count only the descriptions ``viewer`` has rated."""
    summary = store.get_model(model)
    heads = [
        store.get_head(model, layer, head)
        for layer in range(summary.n_layers)
        for head in range(summary.n_heads)
    ]
    if shown is not None:
        heads = [shown(view) for view in heads]
    if not any(view.salient or view.operations or view.descriptions or view.patterns for view in heads):
        raise HeadmapsError(f"{model} has no analysis in the store yet; run `headmaps analyze {model}` first")
    # The bootstrap takes seconds on a large store: computed again only when the ratings change.
    ratings: RatingsReport = cached_ratings_report(
        store, model, resamples=resamples, blind_for=viewer, blind=blind
    )
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: files("evaluation.web").joinpath("templates", name).read_text("utf-8")
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["token"] = token_html
    latest: dict[tuple[int, int], Any] = {}
    for view in heads:
        if view.descriptions:
            latest[view.layer, view.head] = view.descriptions[-1]
    return env.get_template("report.html.j2").render(
        model=summary,
        heads=heads,
        latest=latest,
        heatmaps=_heatmaps(store, summary, heads),
        pattern_maps=_pattern_maps(store, model),
        notable_patterns=notable_patterns,
        pattern_meanings=PATTERNS,
        correlation=latest_correlation(store, model),
        ratings=ratings,
        labels=RATING_LABELS,
        label_meanings=RATING_MEANINGS,
        categories=CATEGORIES,
        category_meanings=CATEGORY_MEANINGS,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(store: Store, model: str, path: Path, **kwargs: Any) -> Path:
    """Write the report atomically (a crash never leaves half a page)."""
    html = build_report(store, model, **kwargs)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
