"""What people said about the descriptions: label distributions and inter-rater agreement.

Reads the current rating of each (rater, description) from the store; earlier ratings a
rater replaced are history and do not count. ``cached_ratings_report`` keeps the bootstrap's
result until the model's ratings or descriptions change (``data_version``), for the web report.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter, OrderedDict, defaultdict
from typing import Any

from pydantic import BaseModel
from sqlalchemy import case, func, select

from evaluation.agreement import agreement, bootstrap, krippendorff_alpha
from store import Store
from store import tables as S
from store.labels import RATING_LABELS


class Distribution(BaseModel):
    """Counts of each label within one group of descriptions."""

    group: str
    ratings: int
    descriptions: int
    counts: dict[str, int]
    """Label -> number of current ratings, every label of the scale present."""
    share_plausible: float | None
    """Fraction of ratings that are ``plausible`` among those that judged (not ``cannot_tell``)."""


class Agreement(BaseModel):
    statistic: str
    """``cohen_kappa`` for two raters, ``krippendorff_alpha_<level>`` for more."""
    raters: int
    units: int
    """Descriptions rated by at least two raters."""
    value: float | None
    low: float | None
    high: float | None
    """95% percentile-bootstrap interval, resampling descriptions."""


class RatingsReport(BaseModel):
    model: str | None
    ratings: int
    raters: list[str]
    overall: Distribution
    by_category: list[Distribution]
    by_prompt: list[Distribution]
    by_llm: list[Distribution]
    agreement: Agreement | None
    """Agreement on all labels, as nominal categories (None with fewer than two raters)."""
    ordinal_agreement: Agreement | None
    """Krippendorff's ordinal alpha on the judging labels only (plausible > partially > not),
    for any number of raters; ``cannot_tell`` is left out as it is not on that scale."""
    blind_for: str | None = None
    """Blind review: the rater whose rated descriptions alone are counted (``only``)."""
    blind: bool = False
    """Whether the report counts only some descriptions (those ``blind_for`` has rated)."""
    hidden: int = 0
    """Blind: current ratings of descriptions left out (not yet rated by ``blind_for``)."""


def _finite(value: float) -> float | None:
    return None if value != value else value  # NaN -> None


def _distribution(group: str, rows: list[tuple[int, str]]) -> Distribution:
    counts = Counter(label for _, label in rows)
    judged = sum(counts[label] for label in RATING_LABELS if label != "cannot_tell")
    return Distribution(
        group=group,
        ratings=len(rows),
        descriptions=len({d for d, _ in rows}),
        counts={label: counts.get(label, 0) for label in RATING_LABELS},
        share_plausible=counts.get("plausible", 0) / judged if judged else None,
    )


def _grouped(rows: list[dict[str, Any]], key: str) -> list[Distribution]:
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in rows:
        groups[str(row[key] or "none")].append((row["description"], row["label"]))
    return [_distribution(name, groups[name]) for name in sorted(groups)]


def _agreement(raw: dict[str, Any] | None) -> Agreement | None:
    if raw is None:
        return None
    return Agreement(
        statistic=raw["statistic"],
        raters=raw["raters"],
        units=raw["units"],
        value=_finite(raw["value"]),
        low=_finite(raw["low"]),
        high=_finite(raw["high"]),
    )


def current_ratings(store: Store, model: str | None = None) -> list[dict[str, Any]]:
    """One row per current rating: description, rater, label, and the description's groups."""
    query = (
        select(
            S.Rating.description_id,
            S.Rating.rater,
            S.Rating.label,
            S.Description.category,
            S.Description.prompt_name,
            S.Description.llm_model,
        )
        .join(S.Description, S.Description.id == S.Rating.description_id)
        .join(S.Head, S.Head.id == S.Description.head_id)
        .join(S.Model, S.Model.id == S.Head.model_id)
        .where(S.Rating.is_current)
        .order_by(S.Rating.description_id, S.Rating.rater)
    )
    if model is not None:
        store.get_model(model)  # a clear error for an unknown model
        query = query.where(S.Model.name == model)
    with store.read() as session:
        return [
            {"description": d, "rater": r, "label": label, "category": c, "prompt": p, "llm": m}
            for d, r, label, c, p, m in session.execute(query)
        ]


def ratings_report(
    store: Store,
    model: str | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
    blind_for: str | None = None,
    blind: bool = False,
) -> RatingsReport:
    """Label distributions and agreement over the current ratings (of ``model``). ``blind``:
    only the descriptions ``blind_for`` has rated count (none for an anonymous viewer), as a
    rater may see others' ratings of a description only once they have rated it themselves; an
    aggregate over the rest would tell them how others judged what they are about to judge."""
    rows = current_ratings(store, model)
    hidden = 0
    if blind:
        seen = {row["description"] for row in rows if blind_for is not None and row["rater"] == blind_for}
        kept = [row for row in rows if row["description"] in seen]
        hidden, rows = len(rows) - len(kept), kept
    raters = sorted({row["rater"] for row in rows})
    units: dict[int, dict[str, str]] = defaultdict(dict)
    for row in rows:
        units[row["description"]][row["rater"]] = row["label"]
    judged_order = [label for label in RATING_LABELS if label != "cannot_tell"]
    judged = {
        unit: {r: label for r, label in by_rater.items() if label != "cannot_tell"}
        for unit, by_rater in units.items()
    }
    nominal = agreement(units, resamples=resamples, seed=seed) if len(raters) >= 2 else None
    ordinal = None
    if len(raters) >= 2:
        # Alpha for any number of raters: kappa has no ordinal form.
        shared = [u for u, by_rater in judged.items() if len(by_rater) >= 2]

        def statistic(sample: list[int]) -> float:
            return krippendorff_alpha(
                {i: judged[u] for i, u in enumerate(sample)}, level="ordinal", order=judged_order[::-1]
            )

        interval = bootstrap(shared, statistic, resamples=resamples, seed=seed)
        ordinal = {
            "statistic": "krippendorff_alpha_ordinal",
            "raters": len({r for u in shared for r in judged[u]}),
            "units": len(shared),
            "value": interval.value,
            "low": interval.low,
            "high": interval.high,
        }
    return RatingsReport(
        model=model,
        ratings=len(rows),
        raters=raters,
        overall=_distribution("all", [(row["description"], row["label"]) for row in rows]),
        by_category=_grouped(rows, "category"),
        by_prompt=_grouped(rows, "prompt"),
        by_llm=_grouped(rows, "llm"),
        agreement=_agreement(nominal),
        ordinal_agreement=_agreement(ordinal),
        blind_for=blind_for if blind else None,
        blind=blind,
        hidden=hidden,
    )


# --- the cache of reports -----------------------------------------------------------------------

CACHE_SIZE = 32
"""Reports kept (one per store, model, resamples, seed and data version); the oldest used goes."""

_cache: OrderedDict[tuple, tuple[weakref.ref, RatingsReport]] = OrderedDict()
_cache_lock = threading.Lock()


def data_version(store: Store, model: str | None = None) -> tuple:
    """What changes whenever the ratings or descriptions (of ``model``) do, in one SELECT: the
    descriptions' count and largest id, and the ratings' count, current count, largest id and
    newest time (a replaced rating adds a row; one made not current changes the current count)."""
    d, r = S.Description, S.Rating
    query = select(
        func.count(func.distinct(d.id)),
        func.max(d.id),
        func.count(r.id),
        func.sum(case((r.is_current, 1), else_=0)),
        func.max(r.id),
        func.max(r.created_at),
    ).select_from(d)
    if model is not None:
        query = (
            query.join(S.Head, S.Head.id == d.head_id)
            .join(S.Model, S.Model.id == S.Head.model_id)
            .where(S.Model.name == model)
        )
    query = query.outerjoin(r, r.description_id == d.id)
    with store.read() as session:
        return tuple(session.execute(query).one())


def cached_ratings_report(
    store: Store,
    model: str | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
    blind_for: str | None = None,
    blind: bool = False,
) -> RatingsReport:
    """``ratings_report``, computed again only when ``data_version`` changed: a page that shows
    it need not redo the bootstrap on every request. Thread-safe; two requests that miss at
    once both compute, and the same report is kept."""
    key = (id(store), model, resamples, seed, blind, blind_for, data_version(store, model))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0]() is store:  # not another store that reused the id
            _cache.move_to_end(key)
            return hit[1].model_copy(deep=True)
    report = ratings_report(store, model, resamples=resamples, seed=seed, blind_for=blind_for, blind=blind)
    with _cache_lock:
        _cache[key] = (weakref.ref(store), report)
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return report.model_copy(deep=True)
