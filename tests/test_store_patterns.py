"""Attention-pattern scores as search filters and in export files, on SQLite and PostgreSQL: the
full-text search and the semantic search's filter keep exactly the heads whose latest pattern
score reaches each minimum (alone and with operation scores), and ``pattern_analysis`` and
``head_pattern`` survive an export → import → export round trip, while files from before them
still import."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from describer.errors import HeadmapsError
from evaluation import semantic
from evaluation.semantic import Filters, split_min_scores
from store import export_store, import_file, open_store
from store import tables as S
from tests._patternstore import LATEST, N_HEADS, N_LAYERS, add_patterns
from tests._storedb import ENGINES, analysis, definitions, description, make_url, model_info


@pytest.fixture(params=ENGINES)
def url(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    yield from make_url(request.param, tmp_path)


@pytest.fixture()
def store(url: str):  # noqa: ANN201
    with open_store(url) as s:
        info = model_info("tiny", N_LAYERS, N_HEADS)
        s.save_analysis(info, analysis(info), settings_key="k", operations=definitions())
        for layer in range(N_LAYERS):
            for head in range(N_HEADS):
                s.add_description(
                    description(layer=layer, head=head, pattern=f"attends somewhere {layer}{head}")
                )
        add_patterns(s)
        yield s


EVERY_HEAD = {(layer, head) for layer in range(N_LAYERS) for head in range(N_HEADS)}


def found(store, **filters: object) -> set[tuple[int, int]]:  # noqa: ANN001
    return {(h.layer, h.head) for h in store.search("attends", limit=100, **filters)}


def test_search_keeps_the_heads_at_or_above_a_pattern_score(store) -> None:  # noqa: ANN001
    assert found(store) == EVERY_HEAD
    assert found(store, min_patterns={"induction": 0.4}) == {(1, 2), (0, 1)}
    assert found(store, min_patterns={"induction": 0.83}) == {(1, 2)}  # the minimum is inclusive
    assert found(store, min_patterns={"induction": 0.84}) == set()
    # Several patterns: every one must hold.
    assert found(store, min_patterns={"induction": 0.4, "previous_token": 0.5}) == {(0, 1)}
    # The latest pattern analysis is the one searched: the older one made 2.3 an induction head
    # and gave every head previous_token 0.99 and distance 7.
    assert (2, 3) not in found(store, min_patterns={"induction": 0.5})
    assert found(store, min_patterns={"previous_token": 0.95}) == set()
    assert found(store, min_patterns={"distance": 1.0}) == set()
    # Entropy, in nats: 1 + layer + head / 10.
    assert found(store, min_patterns={"entropy": 3.2}) == {(2, 2), (2, 3)}
    assert found(store, min_patterns={"induction": 0.4}, layer_min=1) == {(1, 2)}


def test_pattern_and_operation_minimums_combine(store) -> None:  # noqa: ANN001
    copy = store.operation_grid("tiny", "copy")
    threshold = sorted(copy[layer][head] for layer, head in ((0, 1), (1, 2)))[1]
    expected = {(layer, head) for layer, head in ((0, 1), (1, 2)) if copy[layer][head] >= threshold}
    assert len(expected) == 1  # of the two induction heads, only the better copier passes
    both = found(store, min_patterns={"induction": 0.4}, min_scores={"copy": threshold})
    assert both == expected
    everywhere = {h for h in EVERY_HEAD if copy[h[0]][h[1]] >= threshold}
    assert found(store, min_scores={"copy": threshold}) == everywhere


def test_a_model_without_pattern_scores_is_filtered_out(store) -> None:  # noqa: ANN001
    other = model_info("other", 2, 2)
    store.save_analysis(other, analysis(other, ops=("copy",)), settings_key="k")
    store.add_description(description("other", 0, 0, pattern="attends nowhere"))
    assert ("other", 0, 0) in {(h.model, h.layer, h.head) for h in store.search("attends", limit=100)}
    hits = store.search("attends", limit=100, min_patterns={"first_token": 0.0})
    assert {h.model for h in hits} == {"tiny"} and len(hits) == len(EVERY_HEAD)


def test_semantic_filter_keeps_the_same_heads(store) -> None:  # noqa: ANN001
    """The semantic search's filter (``_allowed``) and its full-text path agree with the store."""
    allowed = semantic._allowed(store, None, Filters(min_patterns={"induction": 0.4}))
    assert {(row["layer"], row["head"]) for row in allowed.values()} == {(1, 2), (0, 1)}
    allowed = semantic._allowed(store, None, Filters(min_patterns={"induction": 0.4, "previous_token": 0.5}))
    assert {(row["layer"], row["head"]) for row in allowed.values()} == {(0, 1)}
    assert Filters(min_patterns={"induction": 0.1}).active
    result = semantic.search(store, "attends", Filters(min_patterns={"induction": 0.4}), mode="fulltext")
    assert {(h.layer, h.head) for h in result.results} == {(1, 2), (0, 1)}


def test_min_scores_split_into_operations_and_patterns() -> None:
    operations, patterns = split_min_scores({"induction": 0.5, "copy": 0.3, "entropy": 2.0, "nope": 1.0})
    assert operations == {"copy": 0.3, "nope": 1.0}  # an unknown name stays an operation
    assert patterns == {"induction": 0.5, "entropy": 2.0}


def pattern_rows(store) -> dict[str, int]:  # noqa: ANN001
    with store.read() as session:
        return {
            t.__tablename__: session.scalar(select(func.count()).select_from(t))
            for t in (S.PatternAnalysis, S.HeadPattern)
        }


def empty(store) -> None:  # noqa: ANN001
    with store.write() as session:
        for table in reversed(S.Base.metadata.sorted_tables):
            session.execute(table.delete())


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_patterns_round_trip_through_an_export(store, tmp_path: Path, fmt: str) -> None:  # noqa: ANN001
    before = pattern_rows(store)
    assert before == {"pattern_analysis": 2, "head_pattern": 12 * (3 + 4)}
    first = export_store(store, fmt=fmt, path=tmp_path / f"a.{fmt}")
    empty(store)
    added = import_file(store, tmp_path / f"a.{fmt}")
    assert added["pattern_analysis"] == 2 and added["head_pattern"] == 12 * 7
    assert pattern_rows(store) == before
    assert store.pattern_grid("tiny", "induction") == LATEST["induction"]  # the latest is still latest
    assert store.pattern_grid("tiny", "entropy") == LATEST["entropy"]
    assert store.get_head("tiny", 1, 2).patterns["induction"] == 0.83
    assert store.pattern_settings("tiny") == {"length": 50, "batch": 16}
    assert export_store(store, fmt=fmt) == first
    assert sum(import_file(store, tmp_path / f"a.{fmt}").values()) == 0  # nothing twice
    assert pattern_rows(store) == before


def test_export_of_one_model_holds_its_patterns_only(store) -> None:  # noqa: ANN001
    other = model_info("other", 2, 2)
    store.save_analysis(other, analysis(other, ops=("copy",)), settings_key="k")
    tables = json.loads(export_store(store, "other"))["tables"]
    assert tables["pattern_analysis"] == [] and tables["head_pattern"] == []
    tables = json.loads(export_store(store, "tiny"))["tables"]
    assert [a["settings_key"] for a in tables["pattern_analysis"]] == ["older", "latest"]
    row = next(
        r
        for r in tables["head_pattern"]
        if (r["pattern_analysis"], r["layer"], r["head"], r["pattern"]) == (2, 1, 2, "induction")
    )
    assert row["score"] == 0.83


def test_an_import_merges_patterns_without_replacing_stored_ones(store, tmp_path: Path) -> None:  # noqa: ANN001
    doc = json.loads(export_store(store))
    for row in doc["tables"]["head_pattern"]:
        row["score"] = 0.0
    doc["tables"]["head_pattern"].append(
        {"pattern_analysis": 2, "layer": 0, "head": 0, "pattern": "distance", "score": 4.5}
    )
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(doc))
    added = import_file(store, changed)
    assert added["pattern_analysis"] == 0 and added["head_pattern"] == 1  # only the new score
    assert store.get_head("tiny", 1, 2).patterns["induction"] == 0.83  # the stored one is kept
    assert store.get_head("tiny", 0, 0).patterns["distance"] == 4.5


def test_files_from_before_patterns_still_import(store, tmp_path: Path) -> None:  # noqa: ANN001
    doc = json.loads(export_store(store))
    del doc["tables"]["pattern_analysis"], doc["tables"]["head_pattern"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    zipped = tmp_path / "old.zip"
    zipped.write_bytes(export_store(store, fmt="csv"))
    with zipfile.ZipFile(zipped) as archive:
        kept = {n: archive.read(n) for n in archive.namelist() if "pattern" not in n}
    with zipfile.ZipFile(zipped, "w") as archive:
        for name, data in kept.items():
            archive.writestr(name, data)
    for path in (old, zipped):
        empty(store)
        added = import_file(store, path)
        assert added["description"] == 12 and added["pattern_analysis"] == 0 and added["head_pattern"] == 0
        assert store.get_head("tiny", 1, 2).patterns == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pattern": "x" * 51}, "bad attention-pattern score"),
        ({"score": "NaN"}, "bad attention-pattern score"),
        ({"layer": 9}, "outside tiny"),
        ({"pattern_analysis": 7}, "malformed export"),
    ],
)
def test_bad_pattern_rows_are_refused(store, tmp_path: Path, change: dict, message: str) -> None:  # noqa: ANN001
    doc = json.loads(export_store(store))
    doc["tables"]["head_pattern"][0].update(change)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    empty(store)
    with pytest.raises(HeadmapsError, match=message):
        import_file(store, bad)
    assert pattern_rows(store) == {"pattern_analysis": 0, "head_pattern": 0}  # one transaction
