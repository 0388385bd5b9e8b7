"""Attention-pattern scores (``describer.maps.patterns``) in the web app and the report: one
pattern's layer×head grid with its meaning and top heads (``GET /api/models/{model}/patterns/
{pattern}``, the report's maps), the scale each pattern is coloured on, and a head's scores as
the rows of its page's "What it attends to" section."""

from __future__ import annotations

import math

from pydantic import BaseModel

from describer.errors import NotFound
from describer.maps.patterns import PATTERNS, check_pattern, notable_patterns
from store import Store

TOP = 10
"""Top heads listed per pattern by default."""


class TopHead(BaseModel):
    layer: int
    head: int
    score: float


class PatternGrid(BaseModel):
    model: str
    pattern: str
    label: str
    """How a sentence names a head scoring high ("an induction head")."""
    help: str
    """What the score measures."""
    unit: str
    """``fraction`` (0…1), ``nats`` or ``positions``."""
    notable: float | None
    """A score at or above this is notable (None: never on its own)."""
    scale: float
    """The score shaded darkest: 1 for a fraction, the model's highest score otherwise."""
    scores: list[list[float | None]]
    """``[layer][head]`` from the model's latest pattern analysis; None where a head has none."""
    top_heads: list[TopHead]
    """The highest-scoring heads, highest first (ties by layer, then head)."""


def ordered(names: list[str]) -> list[str]:
    """Pattern names in ``PATTERNS`` order, any other (from a newer headmaps) after them."""
    known = [name for name in PATTERNS if name in names]
    return known + sorted(set(names) - set(known))


def stored_patterns(store: Store, model: str | None = None) -> list[str]:
    """The patterns stored for ``model`` (or any model), in ``PATTERNS`` order."""
    return ordered(store.pattern_names(model))


def scale_of(pattern: str, values: list[float]) -> float:
    """The value a pattern's colour scale ends at: 1 for fractions, else the highest value."""
    spec = PATTERNS.get(pattern)
    if spec is not None and spec.unit == "fraction":
        return 1.0
    top = max(values, default=0.0)
    return top if top > 0 else 1.0


def shade(value: float | None, scale: float) -> float | None:
    """``value`` on its pattern's scale, 0 to 1 (None stays None)."""
    if value is None:
        return None
    return min(max(value / scale, 0.0), 1.0)


def pattern_grid(store: Store, model: str, pattern: str, top: int = TOP) -> PatternGrid:
    """``pattern``'s scores of every head of ``model``, with its meaning and top heads. An
    unknown pattern names the valid ones; one not stored for the model names those stored."""
    spec = check_pattern(pattern)
    stored = stored_patterns(store, model)  # an unknown model is an error here
    if not stored:
        raise NotFound(f"no attention-pattern scores of {model} in the store; run: headmaps analyze {model}")
    if pattern not in stored:
        raise NotFound(f"no scores for pattern {pattern!r} of {model}; stored: {', '.join(stored)}")
    grid = store.pattern_grid(model, pattern)
    scores = [[None if math.isnan(v) else v for v in row] for row in grid]
    cells = [
        (v, layer, head) for layer, row in enumerate(scores) for head, v in enumerate(row) if v is not None
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return PatternGrid(
        model=model,
        pattern=pattern,
        label=spec.label,
        help=spec.help,
        unit=spec.unit,
        notable=spec.notable,
        scale=scale_of(pattern, [c[0] for c in cells]),
        scores=scores,
        top_heads=[TopHead(layer=layer, head=head, score=v) for v, layer, head in cells[:top]],
    )


class PatternRow(BaseModel):
    """One of a head's pattern scores, as its page shows it."""

    name: str
    label: str
    help: str
    unit: str
    score: float
    notable: bool


def head_rows(scores: dict[str, float]) -> list[PatternRow]:
    """A head's pattern scores in ``PATTERNS`` order, each with its meaning."""
    notable = dict(notable_patterns(scores))
    rows = []
    for name in ordered(list(scores)):
        spec = PATTERNS.get(name)
        rows.append(
            PatternRow(
                name=name,
                label=spec.label if spec else name,
                help=spec.help if spec else "",
                unit=spec.unit if spec else "",
                score=scores[name],
                notable=name in notable,
            )
        )
    return rows
