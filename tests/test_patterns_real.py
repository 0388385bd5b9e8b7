"""On gemma-3-270m the detectors find the model's real induction and previous-token heads, and
those heads do what the names say: an induction head's stripe disappears when the second half
is not a repeat, and the scores do not depend on how the batch was chunked."""

from __future__ import annotations

import statistics

import pytest
import torch

from describer.maps.attention import measure, pattern_scores, sample_sequences
from describer.maps.patterns import PatternScores, PatternSettings
from tests._real import real_model

pytestmark = pytest.mark.slow
SETTINGS = PatternSettings()


@pytest.fixture(scope="module")
def gemma_patterns() -> PatternScores:
    loaded = real_model("gemma-3-270m")
    return pattern_scores(loaded.adapter, loaded.tokenizer, SETTINGS)


def _flat(grid: list[list[float]]) -> list[float]:
    return [v for row in grid for v in row]


def test_gemma_has_clear_induction_and_previous_token_heads(gemma_patterns: PatternScores) -> None:
    for name in ("induction", "previous_token", "duplicate_token"):
        values = _flat(gemma_patterns.scores[name])
        best = max(values)
        # A few heads stand out; most heads barely look there.
        assert best > 0.5, f"no {name} head found (best {best:.2f})"
        assert statistics.median(values) < 0.1
        assert sum(v > 0.4 for v in values) <= 6
    induction = gemma_patterns.top_heads("induction", 1)[0]
    previous = gemma_patterns.top_heads("previous_token", 1)[0]
    # An induction head needs an earlier previous-token head to read from.
    assert previous["layer"] < induction["layer"]
    for value in _flat(gemma_patterns.scores["first_token"]):
        assert 0.0 <= value <= 1.0


def test_the_induction_stripe_needs_the_repeat(gemma_patterns: PatternScores) -> None:
    loaded = real_model("gemma-3-270m")
    top = gemma_patterns.top_heads("induction", 1)[0]
    ids = sample_sequences(loaded.tokenizer, loaded.adapter.vocab_size, SETTINGS)
    L = SETTINGS.length
    # The second half replaced by other random tokens (none repeating the first half's).
    fresh = sample_sequences(
        loaded.tokenizer, loaded.adapter.vocab_size, SETTINGS.model_copy(update={"seed": 7})
    )
    mixed = ids.clone()
    mixed[:, L + 1 :] = fresh[:, 1 : L + 1]
    repeats = sum(len(set(row[1 : L + 1].tolist()) & set(row[L + 1 :].tolist())) for row in mixed)
    assert repeats <= 2  # by chance at most: the vocabulary is 262k
    without = measure(loaded.adapter, mixed, L)
    assert without["induction"][top["layer"]][top["head"]] < 0.25 * top["score"]


def test_chunking_does_not_change_the_scores(gemma_patterns: PatternScores) -> None:
    loaded = real_model("gemma-3-270m")
    ids = sample_sequences(loaded.tokenizer, loaded.adapter.vocab_size, SETTINGS)
    again = measure(loaded.adapter, ids[:4], SETTINGS.length, chunk=3)
    ref = measure(loaded.adapter, ids[:4], SETTINGS.length, chunk=4)
    for name in again:
        assert torch.allclose(torch.tensor(again[name]), torch.tensor(ref[name]), atol=1e-5)
