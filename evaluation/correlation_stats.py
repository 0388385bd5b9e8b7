"""The numbers of the correlative experiment: Pearson r between static and dynamic scores, the
way the paper's code computes it and the ways that calibrate it.

Per operation and condition (with / without context), over all heads:

- ``r`` (the headline, as the paper's code): Pearson r over templates × heads concatenated — each
  head's static score paired with its dynamic score under each template, 4 points per head;
- ``r_averaged``: r between the static score and the dynamic score averaged over templates;
- ``ceiling``: how well one template's dynamic scores predict the mean of the other three
  (r per left-out template, averaged) — no static score can agree with the dynamic ones much
  better than the templates agree with each other;
- ``within_layer_r``: r after subtracting each layer's mean from both scores, so that agreement
  on which layers matter cannot explain it alone.

r is None (NaN) where a score vector is constant.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from describer.maps.results import OperationScores


class Dynamic(BaseModel):
    """Dynamic scores of one operation per template, ``[template][layer][head]``."""

    with_context: list[list[list[float]]]
    without_context: list[list[list[float]]]
    suppression_with_context: list[list[list[float]]]
    suppression_without_context: list[list[list[float]]]


class CorrelationRow(BaseModel):
    operation: str
    category: str
    n_pairs: int
    """Pairs used (after the single-token filter and ``max_pairs``)."""
    k: int
    max_static: float
    r_without_context: float | None
    """Pearson r over templates × heads (the paper's way); None where a score vector is constant."""
    r_with_context: float | None
    suppression_r_without_context: float | None
    suppression_r_with_context: float | None
    r_without_context_averaged: float | None = None
    """r against the template-averaged dynamic scores."""
    r_with_context_averaged: float | None = None
    ceiling_without_context: float | None = None
    """The templates' agreement with each other (see the module)."""
    ceiling_with_context: float | None = None
    within_layer_r_without_context: float | None = None
    """r of layer-centred scores."""
    within_layer_r_with_context: float | None = None


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson r; NaN when either vector is constant (r is undefined there)."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(x) != len(y):
        raise ValueError("vectors differ in length")
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    if denom == 0.0 or len(x) < 2:
        return math.nan
    return float((x * y).sum() / denom)


def median(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else None


def _value(r: float) -> float | None:
    return None if math.isnan(r) else round(r, 6)


def pooled_r(static: np.ndarray, by_template: np.ndarray) -> float | None:
    """r over templates × heads: ``static`` ``[L, H]`` repeated against ``by_template`` ``[T, L, H]``."""
    return _value(pearson(np.broadcast_to(static, by_template.shape), by_template))


def template_ceiling(by_template: np.ndarray) -> float | None:
    """Mean over templates of r(that template's scores, the mean of the others)."""
    T = by_template.shape[0]
    if T < 2:
        return None
    rs = [pearson(by_template[t], np.delete(by_template, t, axis=0).mean(0)) for t in range(T)]
    finite = [r for r in rs if math.isfinite(r)]
    return round(sum(finite) / len(finite), 6) if finite else None


def within_layer_r(static: np.ndarray, dynamic: np.ndarray) -> float | None:
    """r of ``[L, H]`` scores after removing each layer's mean from both."""
    return _value(pearson(static - static.mean(1, keepdims=True), dynamic - dynamic.mean(1, keepdims=True)))


def correlation_row(static: OperationScores, dyn: Dynamic) -> CorrelationRow:
    S, P = np.asarray(static.scores), np.asarray(static.suppression)
    without, with_ = np.asarray(dyn.without_context), np.asarray(dyn.with_context)
    return CorrelationRow(
        operation=static.name,
        category=static.category,
        n_pairs=static.n_pairs,
        k=static.k,
        max_static=max(max(row) for row in static.scores),
        r_without_context=pooled_r(S, without),
        r_with_context=pooled_r(S, with_),
        suppression_r_without_context=pooled_r(P, np.asarray(dyn.suppression_without_context)),
        suppression_r_with_context=pooled_r(P, np.asarray(dyn.suppression_with_context)),
        r_without_context_averaged=_value(pearson(S, without.mean(0))),
        r_with_context_averaged=_value(pearson(S, with_.mean(0))),
        ceiling_without_context=template_ceiling(without),
        ceiling_with_context=template_ceiling(with_),
        within_layer_r_without_context=within_layer_r(S, without.mean(0)),
        within_layer_r_with_context=within_layer_r(S, with_.mean(0)),
    )


MEDIANS = (
    "r_without_context",
    "r_with_context",
    "r_without_context_averaged",
    "r_with_context_averaged",
    "ceiling_without_context",
    "ceiling_with_context",
    "within_layer_r_without_context",
    "within_layer_r_with_context",
)
"""The row fields whose median over operations a result reports (``median_<field>``)."""


def medians(rows: Sequence[CorrelationRow]) -> dict[str, float | None]:
    return {f"median_{name}": median([getattr(r, name) for r in rows]) for name in MEDIANS}


CSV_COLUMNS = (
    "category",
    "operation",
    "n_pairs",
    "k",
    "max_static",
    "r_without_context",
    "r_with_context",
    "suppression_r_without_context",
    "suppression_r_with_context",
    "r_without_context_averaged",
    "r_with_context_averaged",
    "ceiling_without_context",
    "ceiling_with_context",
    "within_layer_r_without_context",
    "within_layer_r_with_context",
)


def rows_csv(rows: Sequence[CorrelationRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        data = row.model_dump()
        writer.writerow(["" if data[c] is None else data[c] for c in CSV_COLUMNS])
    return buffer.getvalue()


def paper_dir() -> Path | None:
    """The paper's published tables: ``HEADMAPS_PAPER_DIR``, else ``shared/paper`` beside the repo."""
    env = os.environ.get("HEADMAPS_PAPER_DIR")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared" / "paper", here / "shared" / "paper"]
    return next((p for p in candidates if p.is_dir()), None)


def paper_medians() -> dict[str, tuple[float | None, float | None]]:
    """Per model in the paper: (median r without context, median r with context)."""
    folder = paper_dir()
    if folder is None:
        return {}
    out = {}
    for path in sorted(folder.glob("correlation_*.csv")):
        with path.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))

        def col(name: str, rows: list[dict[str, str]] = rows) -> float | None:
            return median([float(r[name]) for r in rows if r.get(name, "").strip()])

        out[path.stem.removeprefix("correlation_")] = (col("r_without_context"), col("r_with_context"))
    return out
