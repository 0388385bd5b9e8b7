"""The ratings report reads current ratings from the store, groups them and measures agreement."""

from __future__ import annotations

from pathlib import Path

import pytest

from describer.errors import HeadmapsError
from evaluation.agreement import cohen_kappa, krippendorff_alpha
from evaluation.ratings import ratings_report
from store import open_store
from store.records import RatingIn
from tests._storedb import ENGINES, analysis, definitions, description, make_url, model_info


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    for url in make_url(request.param, tmp_path):
        with open_store(url) as s:
            info = model_info()
            s.save_analysis(info, analysis(info), settings_key="k", operations=definitions())
            yield s


def _describe(store, n: int) -> list[int]:  # noqa: ANN001
    ids = []
    for i in range(n):
        category = "knowledge_recalling" if i % 2 == 0 else "in_context_identification"
        llm = "big-llm" if i < n // 2 else "small-llm"
        ids.append(
            store.add_description(description(layer=i // 4, head=i % 4, category=category, llm_model=llm))
        )
    return ids


def test_two_raters_distribution_and_kappa(store) -> None:  # noqa: ANN001
    ids = _describe(store, 8)
    alice = ["plausible", "plausible", "not_plausible", "partially_plausible"] * 2
    bob = ["plausible", "not_plausible", "not_plausible", "partially_plausible"] * 2
    for d, a, b in zip(ids, alice, bob, strict=True):
        store.add_rating(RatingIn(description_id=d, rater="alice", label=a))
        store.add_rating(RatingIn(description_id=d, rater="bob", label=b))
    # A replaced rating is history: bob first said "cannot_tell" on a fresh description,
    # then changed his mind; only the current label counts.
    store.add_rating(RatingIn(description_id=ids[0], rater="bob", label="cannot_tell"))
    store.add_rating(RatingIn(description_id=ids[0], rater="bob", label="plausible"))

    report = ratings_report(store, "tiny", resamples=200)
    assert report.ratings == 16 and report.raters == ["alice", "bob"]
    assert report.overall.counts == {
        "plausible": 6,
        "partially_plausible": 4,
        "not_plausible": 6,
        "cannot_tell": 0,
    }
    assert report.overall.share_plausible == pytest.approx(6 / 16)
    by_llm = {d.group: d for d in report.by_llm}
    assert set(by_llm) == {"big-llm", "small-llm"} and by_llm["big-llm"].descriptions == 4
    by_category = {d.group: d.ratings for d in report.by_category}
    assert by_category == {"knowledge_recalling": 8, "in_context_identification": 8}
    assert report.agreement is not None and report.agreement.statistic == "cohen_kappa"
    assert report.agreement.value == pytest.approx(cohen_kappa(alice, bob))
    assert report.agreement.units == 8
    assert report.agreement.low <= report.agreement.value <= report.agreement.high


def test_three_raters_use_alpha_and_ordinal_skips_cannot_tell(store) -> None:  # noqa: ANN001
    ids = _describe(store, 6)
    labels = {
        "r1": ["plausible", "plausible", "not_plausible", "partially_plausible", "plausible", "cannot_tell"],
        "r2": [
            "plausible",
            "partially_plausible",
            "not_plausible",
            "partially_plausible",
            "plausible",
            "plausible",
        ],
        "r3": ["plausible", "plausible", "partially_plausible", "not_plausible", "cannot_tell", "plausible"],
    }
    for rater, row in labels.items():
        for d, label in zip(ids, row, strict=True):
            store.add_rating(RatingIn(description_id=d, rater=rater, label=label))
    report = ratings_report(store, resamples=100)
    units = {d: {r: labels[r][i] for r in labels} for i, d in enumerate(ids)}
    assert report.agreement.statistic == "krippendorff_alpha_nominal"
    assert report.agreement.value == pytest.approx(krippendorff_alpha(units))
    judged = {d: {r: v for r, v in by.items() if v != "cannot_tell"} for d, by in units.items()}
    order = ["not_plausible", "partially_plausible", "plausible"]
    assert report.ordinal_agreement.value == pytest.approx(krippendorff_alpha(judged, "ordinal", order))
    assert report.overall.counts["cannot_tell"] == 2


def test_no_ratings_and_unknown_model(store) -> None:  # noqa: ANN001
    report = ratings_report(store, "tiny")
    assert report.ratings == 0 and report.agreement is None and report.overall.share_plausible is None
    with pytest.raises(HeadmapsError):
        ratings_report(store, "no-such-model")


def test_the_cached_report_is_computed_again_only_when_the_data_change(
    store,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from evaluation import ratings

    ids = _describe(store, 4)
    for d in ids:
        store.add_rating(RatingIn(description_id=d, rater="alice", label="plausible"))
        store.add_rating(RatingIn(description_id=d, rater="bob", label="not_plausible"))
    calls = []
    real = ratings.ratings_report
    monkeypatch.setattr(ratings, "ratings_report", lambda *a, **k: calls.append(a) or real(*a, **k))

    first = ratings.cached_ratings_report(store, "tiny", resamples=50)
    assert ratings.cached_ratings_report(store, "tiny", resamples=50) == first
    assert len(calls) == 1  # no change, no second bootstrap
    ratings.cached_ratings_report(store, "tiny", resamples=60)
    assert len(calls) == 2  # other settings, another entry

    store.add_rating(RatingIn(description_id=ids[0], rater="bob", label="plausible"))  # replaces one
    again = ratings.cached_ratings_report(store, "tiny", resamples=50)
    assert len(calls) == 3 and again.overall.counts["plausible"] == first.overall.counts["plausible"] + 1
    store.add_description(description(layer=2, head=3))
    ratings.cached_ratings_report(store, "tiny", resamples=50)
    assert len(calls) == 4  # a new description of the model changes the version too
    ratings.cached_ratings_report(store, "tiny", resamples=50)
    assert len(calls) == 4

    monkeypatch.setattr(ratings, "CACHE_SIZE", 2)  # bounded: the least recently used goes
    ratings.cached_ratings_report(store, "tiny", resamples=70)
    ratings.cached_ratings_report(store, "tiny", resamples=80)
    assert len(calls) == 6 and len(ratings._cache) == 2
    ratings.cached_ratings_report(store, "tiny", resamples=50)
    assert len(calls) == 7


def test_the_data_version_follows_ratings_made_not_current(store) -> None:  # noqa: ANN001
    from sqlalchemy import update

    from evaluation.ratings import data_version
    from store import tables as S

    d = _describe(store, 1)[0]
    store.add_rating(RatingIn(description_id=d, rater="alice", label="plausible"))
    before = data_version(store, "tiny")
    with store.write() as session:
        session.execute(update(S.Rating).values(is_current=False))
    assert data_version(store, "tiny") != before
    assert data_version(store) == data_version(store, "tiny")  # every model: here, the only one


def test_a_blind_report_counts_only_what_the_viewer_rated(store) -> None:  # noqa: ANN001
    ids = _describe(store, 4)
    for did, label in zip(ids, ["plausible", "not_plausible", "plausible", "cannot_tell"], strict=True):
        store.add_rating(RatingIn(description_id=did, rater="bob", label=label))
    store.add_rating(RatingIn(description_id=ids[1], rater="ann", label="plausible"))
    full = ratings_report(store, "tiny", resamples=20)
    assert full.ratings == 5 and full.hidden == 0 and not full.blind
    ann = ratings_report(store, "tiny", resamples=20, blind=True, blind_for="ann")
    # Only description 1 (which ann rated) counts: her label and bob's, none of bob's others.
    assert ann.blind and ann.blind_for == "ann" and ann.ratings == 2 and ann.hidden == 3
    assert ann.overall.counts["plausible"] == 1 and ann.overall.counts["not_plausible"] == 1
    assert ann.overall.counts["cannot_tell"] == 0 and ann.raters == ["ann", "bob"]
    nobody = ratings_report(store, "tiny", resamples=20, blind=True)
    assert nobody.ratings == 0 and nobody.hidden == 5 and nobody.raters == []
