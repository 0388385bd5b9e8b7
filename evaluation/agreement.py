"""Inter-rater agreement: Cohen's kappa, Krippendorff's alpha, bootstrap intervals.

Plain Python on purpose (no numpy, no torch): ratings are a few thousand labels at most, and
the store side of headmaps never imports the numeric stack.

Reliability data is a mapping ``unit -> {rater: label}`` (a unit is a rated description).
Units rated by fewer than two raters carry no information about agreement and are ignored,
as Krippendorff prescribes.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

Level = Literal["nominal", "ordinal", "interval"]
Reliability = Mapping[Hashable, Mapping[str, Hashable]]


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters who labelled the same items, in the same order.

    ``nan`` when chance agreement is total (both raters always used one and the same label),
    where kappa is undefined rather than perfect.
    """
    if len(first) != len(second):
        raise ValueError("both raters must label the same items")
    n = len(first)
    if n == 0:
        return math.nan
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    count_a, count_b = Counter(first), Counter(second)
    expected = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    if expected == 1.0:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def _distance(
    level: Level, order: Sequence[Hashable], totals: Counter
) -> Callable[[Hashable, Hashable], float]:
    """Krippendorff's squared difference function δ²(c, k) for the chosen level."""
    if level == "nominal":
        return lambda c, k: 0.0 if c == k else 1.0
    rank = {label: i for i, label in enumerate(order)}
    missing = [label for label in totals if label not in rank]
    if missing:
        raise ValueError(f"labels {missing!r} are not in the given order {list(order)!r}")
    if level == "interval":
        return lambda c, k: float(rank[c] - rank[k]) ** 2
    # Ordinal: the distance between two ranks is the mass of values between them, so that a
    # rarely used middle category separates its neighbours less than a popular one.
    mass = [float(totals.get(label, 0)) for label in order]

    def ordinal(c: Hashable, k: Hashable) -> float:
        lo, hi = sorted((rank[c], rank[k]))
        if lo == hi:
            return 0.0
        return (sum(mass[lo : hi + 1]) - (mass[lo] + mass[hi]) / 2.0) ** 2

    return ordinal


def krippendorff_alpha(data: Reliability, level: Level = "nominal", order: Sequence[Hashable] = ()) -> float:
    """Krippendorff's alpha over units rated by any number of raters (missing ratings allowed).

    ``order`` lists the labels from lowest to highest, for the ordinal and interval levels.
    ``nan`` when fewer than two pairable values exist or every value is the same label
    (no disagreement is possible, so agreement cannot be measured).
    """
    units = [list(ratings.values()) for ratings in data.values() if len(ratings) >= 2]
    # Coincidence matrix: each ordered pair of values within a unit, weighted 1/(m_u - 1).
    coincidence: Counter = Counter()
    for values in units:
        weight = 1.0 / (len(values) - 1)
        for i, j in combinations(range(len(values)), 2):
            coincidence[values[i], values[j]] += weight
            coincidence[values[j], values[i]] += weight
    totals: Counter = Counter()
    for (c, _k), weight in coincidence.items():
        totals[c] += weight
    n = sum(totals.values())
    if n < 2 or len(totals) < 2:
        return math.nan
    delta = _distance(level, order, totals)
    observed = sum(weight * delta(c, k) for (c, k), weight in coincidence.items())
    expected = sum(totals[c] * totals[k] * delta(c, k) for c in totals for k in totals) / (n - 1)
    if expected == 0:
        return math.nan
    return 1.0 - observed / expected


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap confidence interval."""

    value: float
    low: float
    high: float
    resamples: int
    """Bootstrap resamples with a defined statistic (``nan`` ones are dropped)."""


def bootstrap(
    units: Sequence[Hashable],
    statistic: Callable[[Sequence[Hashable]], float],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap over units: resample units with replacement, recompute.

    ``statistic`` receives a list of units (with repeats) and returns a number; units are the
    resampling grain (a rated description with all its ratings), as agreement is clustered by
    description.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    point = statistic(list(units))
    rng = random.Random(seed)
    values = []
    for _ in range(resamples if units else 0):
        value = statistic([units[rng.randrange(len(units))] for _ in units])
        if not math.isnan(value):
            values.append(value)
    if not values:
        return Interval(point, math.nan, math.nan, 0)
    values.sort()
    tail = (1 - confidence) / 2
    low = values[min(len(values) - 1, int(math.floor(tail * len(values))))]
    high = values[min(len(values) - 1, int(math.ceil((1 - tail) * len(values))) - 1)]
    return Interval(point, low, high, len(values))


def agreement(
    data: Reliability,
    *,
    level: Level = "nominal",
    order: Sequence[Hashable] = (),
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, object]:
    """Agreement of the raters in ``data`` with a bootstrap interval.

    Two raters: Cohen's kappa on the units both rated. More: Krippendorff's alpha. Returns
    ``{"statistic", "raters", "units", "value", "low", "high", "resamples"}``.
    """
    raters = sorted({rater for ratings in data.values() for rater in ratings})
    shared = [unit for unit, ratings in data.items() if len(ratings) >= 2]
    if len(raters) == 2:
        first, second = raters

        def statistic(units: Sequence[Hashable]) -> float:
            return cohen_kappa([data[u][first] for u in units], [data[u][second] for u in units])

        name = "cohen_kappa"
    else:

        def statistic(units: Sequence[Hashable]) -> float:
            resampled = {i: data[u] for i, u in enumerate(units)}
            return krippendorff_alpha(resampled, level=level, order=order)

        name = f"krippendorff_alpha_{level}"
    interval = bootstrap(shared, statistic, resamples=resamples, seed=seed)
    return {
        "statistic": name,
        "raters": len(raters),
        "units": len(shared),
        "value": interval.value,
        "low": interval.low,
        "high": interval.high,
        "resamples": interval.resamples,
    }
