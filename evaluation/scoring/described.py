"""The described heads of a model as the scorers and the summary read them: every head's view
(its latest analysis) and each description worth scoring (not failed, with a pattern)."""

from __future__ import annotations

from store import Store
from store.records import DescriptionOut, HeadView

Described = tuple[list[HeadView], list[tuple[DescriptionOut, HeadView]]]
"""(every head's view, (description, its head's view) in layer, head, description order)."""


def described_heads(store: Store, model: str) -> Described:
    """Every head's view and the scorable descriptions (maybe none)."""
    summary = store.get_model(model)
    views = [
        store.get_head(model, layer, head)
        for layer in range(summary.n_layers)
        for head in range(summary.n_heads)
    ]
    pairs = [(d, v) for v in views for d in v.descriptions if d.status != "failed" and d.pattern]
    pairs.sort(key=lambda dv: (dv[1].layer, dv[1].head, dv[0].id))
    return views, pairs
