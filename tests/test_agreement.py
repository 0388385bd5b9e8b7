"""Agreement statistics against published worked examples."""

from __future__ import annotations

import math
import random

import pytest

from evaluation.agreement import agreement, bootstrap, cohen_kappa, krippendorff_alpha

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the worked example with
# four observers, twelve units and missing values. Published: nominal 0.743, ordinal 0.815,
# interval 0.849.
_ROWS = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}
EXAMPLE = {u: {r: v[u] for r, v in _ROWS.items() if v[u] is not None} for u in range(12)}


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_krippendorff_published_example(level: str, published: float) -> None:
    assert krippendorff_alpha(EXAMPLE, level, order=[1, 2, 3, 4, 5]) == pytest.approx(published, abs=5e-4)


def test_krippendorff_ignores_singly_rated_units() -> None:
    # Unit 11 has one rating; dropping it entirely changes nothing.
    without = {u: r for u, r in EXAMPLE.items() if u != 11}
    assert krippendorff_alpha(without) == krippendorff_alpha(EXAMPLE)


def test_krippendorff_extremes() -> None:
    perfect = {u: {"a": u % 3, "b": u % 3, "c": u % 3} for u in range(9)}
    assert krippendorff_alpha(perfect) == 1.0
    # Systematic disagreement is below zero.
    opposed = {u: {"a": u % 2, "b": 1 - u % 2} for u in range(10)}
    assert krippendorff_alpha(opposed) < 0
    # One label everywhere: agreement cannot be measured.
    assert math.isnan(krippendorff_alpha({u: {"a": "x", "b": "x"} for u in range(5)}))


def test_krippendorff_needs_an_order_for_ordered_levels() -> None:
    with pytest.raises(ValueError, match="not in the given order"):
        krippendorff_alpha(EXAMPLE, "ordinal", order=[1, 2, 3])


def test_cohen_kappa_textbook() -> None:
    # 50 items: both yes 20, yes/no 5, no/yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4.
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa(first, first) == 1.0
    assert math.isnan(cohen_kappa(["a"] * 4, ["a"] * 4))
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])


def test_two_raters_kappa_matches_alpha_asymptotically() -> None:
    # For two raters and many units, nominal alpha and kappa nearly coincide.
    rng = random.Random(1)
    data = {}
    for u in range(2000):
        truth = rng.choice("abc")
        data[u] = {"r1": truth, "r2": truth if rng.random() < 0.7 else rng.choice("abc")}
    kappa = cohen_kappa([d["r1"] for d in data.values()], [d["r2"] for d in data.values()])
    assert kappa == pytest.approx(krippendorff_alpha(data), abs=0.01)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_data() -> None:
    rng = random.Random(0)
    small = [rng.gauss(0, 1) for _ in range(20)]
    large = [rng.gauss(0, 1) for _ in range(2000)]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    a = bootstrap(small, mean, resamples=500)
    b = bootstrap(large, mean, resamples=500)
    assert a.low <= a.value <= a.high and b.low <= b.value <= b.high
    assert (b.high - b.low) < (a.high - a.low) / 4
    # Same seed, same interval.
    assert bootstrap(small, mean, resamples=200, seed=3) == bootstrap(small, mean, resamples=200, seed=3)


def test_agreement_picks_the_statistic_by_rater_count() -> None:
    two = {u: {"x": u % 2, "y": u % 2} for u in range(10)}
    out = agreement(two, resamples=50)
    assert out["statistic"] == "cohen_kappa" and out["value"] == 1.0 and out["units"] == 10
    many = agreement(EXAMPLE, resamples=50)
    assert many["statistic"] == "krippendorff_alpha_nominal"
    assert many["value"] == pytest.approx(0.743, abs=5e-4)
    assert many["units"] == 11 and many["raters"] == 4
    assert many["low"] <= many["value"] <= many["high"]
