"""Attention-pattern scores for the 3×4 ``tiny`` model of ``tests._webstore``, written with
``Store.save_patterns`` (no model is run): an older pattern analysis that every view must ignore,
then the latest one, whose scores the tests expect."""

from __future__ import annotations

from store import Store
from store.records import PatternsIn
from tests._storedb import model_info

N_LAYERS, N_HEADS = 3, 4


def grid(default: float, cells: dict[tuple[int, int], float]) -> list[list[float]]:
    """A ``[layer][head]`` table of ``default`` with ``cells`` set."""
    return [[cells.get((layer, head), default) for head in range(N_HEADS)] for layer in range(N_LAYERS)]


LATEST = {
    "previous_token": grid(0.05, {(0, 1): 0.9, (2, 3): 0.6}),
    "induction": grid(0.0, {(1, 2): 0.83, (0, 1): 0.45, (2, 3): 0.1}),
    "first_token": grid(0.5, {(2, 0): 0.95}),
    "entropy": [[1.0 + layer + head / 10 for head in range(N_HEADS)] for layer in range(N_LAYERS)],
}
"""The latest analysis: heads 1.2 (induction 0.83) and 0.1 (induction 0.45, previous-token 0.9) are
notable induction heads, 2.3 a previous-token head, 2.0 a sink; entropy peaks at 2.3 (3.3 nats)."""

OLDER = {"induction": grid(0.0, {(2, 3): 0.99}), "previous_token": grid(0.99, {}), "distance": grid(7.0, {})}
"""An earlier analysis with other settings: were it read, 2.3 would be the induction head."""


def add_patterns(store: Store, model: str = "tiny") -> None:
    info = model_info(model, N_LAYERS, N_HEADS)
    store.save_patterns(info, PatternsIn(settings={"length": 20}, scores=OLDER), settings_key="older")
    store.save_patterns(
        info, PatternsIn(settings={"length": 50, "batch": 16}, scores=LATEST), settings_key="latest"
    )
