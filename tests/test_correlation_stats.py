"""The correlation experiment's statistics: Pearson r pooled over templates × heads (the paper's
way), template-averaged, the templates' own agreement and the within-layer r."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.correlation_stats import correlation_row, pearson


def test_pearson() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert pearson(x, 3 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert math.isnan(pearson(x, np.zeros(50)))
    assert math.isnan(pearson(np.ones(3), np.ones(3)))
    with pytest.raises(ValueError):
        pearson([1, 2], [1, 2, 3])


def test_constant_scores_give_null_r() -> None:
    from describer.maps.results import OperationScores
    from evaluation.correlation_stats import Dynamic

    static = OperationScores(
        name="x", category="custom", k=1, n_pairs=3, scores=[[0.0, 1.0]], suppression=[[0.0, 0.0]]
    )
    dyn = Dynamic(
        with_context=[[[0.0, 0.5]]],
        without_context=[[[0.2, 0.2]]],
        suppression_with_context=[[[0.0, 1.0]]],
        suppression_without_context=[[[0.0, 1.0]]],
    )
    row = correlation_row(static, dyn)
    assert row.r_with_context == pytest.approx(1.0)
    assert row.r_without_context is None and row.suppression_r_with_context is None
    assert row.max_static == 1.0
    assert row.ceiling_with_context is None  # one template agrees with no other


def test_pooled_averaged_ceiling_and_within_layer_r() -> None:
    from describer.maps.results import OperationScores
    from evaluation.correlation_stats import Dynamic

    static = [[0.9, 0.1], [0.4, 0.0]]  # 2 layers x 2 heads
    by_template = [[[0.8, 0.3], [0.5, 0.1]], [[0.6, 0.0], [0.1, 0.2]], [[1.0, 0.2], [0.3, 0.0]]]
    grid = OperationScores(name="x", category="custom", k=1, n_pairs=9, scores=static, suppression=static)
    row = correlation_row(
        grid,
        Dynamic(
            with_context=by_template,
            without_context=by_template,
            suppression_with_context=by_template,
            suppression_without_context=by_template,
        ),
    )
    S, D = np.asarray(static), np.asarray(by_template)
    pooled = np.corrcoef(np.tile(S.ravel(), 3), D.reshape(3, -1).ravel())[0, 1]
    assert row.r_with_context == pytest.approx(pooled, abs=1e-6)
    assert row.r_with_context_averaged == pytest.approx(
        np.corrcoef(S.ravel(), D.mean(0).ravel())[0, 1], abs=1e-6
    )
    assert row.r_with_context != pytest.approx(row.r_with_context_averaged, abs=1e-3)  # they differ here
    ceiling = np.mean([np.corrcoef(D[t].ravel(), np.delete(D, t, 0).mean(0).ravel())[0, 1] for t in range(3)])
    assert row.ceiling_with_context == pytest.approx(ceiling, abs=1e-6)
    centred = np.corrcoef(
        (S - S.mean(1, keepdims=True)).ravel(), (D.mean(0) - D.mean(0).mean(1, keepdims=True)).ravel()
    )
    assert row.within_layer_r_with_context == pytest.approx(centred[0, 1], abs=1e-6)
