"""Relation evidence in the store on SQLite and PostgreSQL: written with an analysis, read with a
head, replaced, searched by key and key prefix, backfilled for databases from before it, and
deleted with its analysis."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, inspect

from describer.analyze import backfill_relations, ensure_analysis
from describer.errors import HeadmapsError
from describer.maps.patterns import PatternSettings
from store import open_store
from store import tables as S
from store.records import (
    AnalysisIn,
    HeadSalientIn,
    MappingIn,
    OperationIn,
    OperationScoresIn,
    PatternsIn,
    RelationIn,
    SalientIn,
)
from tests._storedb import ENGINES, analysis, counts, definitions, make_url, model_info


@pytest.fixture(params=ENGINES)
def url(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    yield from make_url(request.param, tmp_path)


@pytest.fixture()
def store(url: str):  # noqa: ANN201
    with open_store(url) as s:
        yield s


def rel(key: str, rows: int, n_rows: int = 4, **extra: object) -> RelationIn:
    return RelationIn(relation=key, label=f"label of {key}", rows=rows, n_rows=n_rows, **extra)


def with_relations(data: AnalysisIn, relations: dict[tuple[int, int], list[RelationIn]]) -> AnalysisIn:
    heads = [h.model_copy(update={"relations": relations.get((h.layer, h.head), [])}) for h in data.heads]
    return data.model_copy(update={"heads": heads})


RELATIONS = {
    (0, 0): [rel("copy", 4, examples=[(" a", "▁A")]), rel("script:inputs:latin", 4)],
    (1, 2): [rel("operation:capital", 3), rel("copy", 1)],
    (2, 3): [rel("operation:copy", 2), rel("suffix:+ed", 2)],
}


def test_relations_are_saved_with_the_analysis_and_read_with_the_head(store) -> None:  # noqa: ANN001
    info = model_info()
    data = with_relations(analysis(info), RELATIONS)
    store.save_analysis(info, data, settings_key="k", operations=definitions())
    assert counts(store)["head_relation"] == 6
    view = store.get_head("tiny", 0, 0)
    assert [(r.relation, r.rows, r.n_rows, r.fraction) for r in view.relations] == [
        ("copy", 4, 4, 1.0),
        ("script:inputs:latin", 4, 4, 1.0),
    ]
    assert view.relations[0].examples == [(" a", "▁A")]
    assert view.relations[0].text() == "4 of 4 rows: label of copy"
    assert store.get_head("tiny", 0, 1).relations == []
    # Saving again (or other relations for the same heads) keeps what is stored.
    store.save_analysis(info, with_relations(data, {(0, 0): [rel("stem", 2)]}), settings_key="k")
    assert counts(store)["head_relation"] == 6
    assert not store.needs_relations("tiny")


def test_relation_records_are_validated() -> None:
    with pytest.raises(ValueError, match="5 rows of 4"):
        rel("copy", 5)
    with pytest.raises(ValueError):
        rel("", 1)


def test_save_relations_adds_or_replaces(store) -> None:  # noqa: ANN001
    info = model_info()
    with pytest.raises(HeadmapsError, match="unknown model"):
        store.save_relations("tiny", {(0, 0): [rel("copy", 1)]})
    store.register_model(info)
    with pytest.raises(HeadmapsError, match="no analysis of tiny"):
        store.save_relations("tiny", {(0, 0): [rel("copy", 1)]})
    store.save_analysis(info, analysis(info), settings_key="k", operations=definitions())
    assert store.needs_relations("tiny") and store.needs_relations("tiny", "k")
    assert store.save_relations("tiny", RELATIONS) == 3
    assert store.save_relations("tiny", {(0, 0): [rel("stem", 1)], (0, 1): [rel("stem", 1)]}) == 1
    assert [r.relation for r in store.get_head("tiny", 0, 0).relations] == ["copy", "script:inputs:latin"]
    assert store.save_relations("tiny", {(0, 0): [rel("stem", 1), rel("stem", 2)]}, replace=True) == 1
    assert [(r.relation, r.rows) for r in store.get_head("tiny", 0, 0).relations] == [("stem", 1)]
    with pytest.raises(HeadmapsError, match="layer 7 out of range"):
        store.save_relations("tiny", {(7, 0): []})


def test_salient_tables_and_analysis_operations(store) -> None:  # noqa: ANN001
    info = model_info()
    data = analysis(info, n_salient=2, n_map=3)
    store.save_analysis(info, data, settings_key="k", operations=definitions())
    key, tables = store.salient_tables("tiny")
    assert key == "k" and len(tables) == 12
    head = data.heads[1 * 4 + 2]
    assert tables[(1, 2)] == [(s.token, [m.token for m in s.mappings]) for s in head.salient]
    assert store.salient_tables("tiny", "other") == (None, {})
    ops = store.analysis_operations("tiny")
    assert sorted((o.name, tuple(o.pairs)) for o in ops) == [("capital", (("capitala", "capitalb"),)),
                                                               ("copy", (("copya", "copyb"),))]  # fmt: skip


def test_heads_with_relation_by_key_prefix_and_fraction(store) -> None:  # noqa: ANN001
    info = model_info()
    store.save_analysis(info, with_relations(analysis(info), RELATIONS), settings_key="k")
    other = model_info("other", 2, 2)
    store.save_analysis(other, with_relations(analysis(other), {(1, 1): [rel("copy", 3)]}), settings_key="k")
    hits = store.heads_with_relation("copy")
    assert [(h.model, h.layer, h.head, h.rows) for h in hits] == [
        ("tiny", 0, 0, 4),
        ("other", 1, 1, 3),
        ("tiny", 1, 2, 1),
    ]
    assert hits[0].text() == "4 of 4 rows: label of copy" and hits[0].examples == [(" a", "▁A")]
    assert [h.model for h in store.heads_with_relation("copy", model="other")] == ["other"]
    assert len(store.heads_with_relation("copy", min_fraction=0.75)) == 2  # 3/4 is kept
    assert len(store.heads_with_relation("copy", limit=1)) == 1
    prefix = store.heads_with_relation("operation:")
    assert [(h.relation, h.layer, h.head) for h in prefix] == [
        ("operation:capital", 1, 2),
        ("operation:copy", 2, 3),
    ]
    assert store.heads_with_relation("operation") == []  # a key, not a prefix
    assert store.heads_with_relation("suffix:+e") == []
    assert store.relation_keys() == sorted(
        ["copy", "operation:capital", "operation:copy", "script:inputs:latin", "suffix:+ed"]
    )
    assert store.relation_keys("other") == ["copy"]
    with pytest.raises(HeadmapsError, match="unknown model"):
        store.heads_with_relation("copy", model="nope")


def test_only_the_latest_analysis_is_searched(store) -> None:  # noqa: ANN001
    info = model_info()
    store.save_analysis(info, with_relations(analysis(info), RELATIONS), settings_key="old")
    store.save_analysis(info, with_relations(analysis(info), {(2, 2): [rel("copy", 2)]}), settings_key="new")
    assert [(h.layer, h.head) for h in store.heads_with_relation("copy")] == [(2, 2)]
    assert [r.relation for r in store.get_head("tiny", 0, 0).relations] == []
    assert [r.relation for r in store.get_head("tiny", 0, 0, settings_key="old").relations][0] == "copy"


def test_relations_go_with_their_analysis(store) -> None:  # noqa: ANN001
    info = model_info()
    store.save_analysis(info, with_relations(analysis(info), RELATIONS), settings_key="k")
    with store.write() as session:
        session.execute(delete(S.Analysis))
    assert counts(store)["head_relation"] == 0


def _word_analysis(info) -> AnalysisIn:  # noqa: ANN001
    """Head 0.0 copies; head 1.1 maps countries to capitals; the rest map to junk."""
    tables = {
        (0, 0): [(" dog", [" dog", " x"]), (" cat", ["▁Cat"]), (" tree", [" tree"])],
        (1, 1): [(" France", [" Paris"]), (" Japan", [" Tokyo"]), (" Peru", [" Lima"])],
    }
    heads = []
    for layer in range(info.n_layers):
        for head in range(info.n_heads):
            rows = tables.get((layer, head), [(f" q{layer}{head}{i}", [f" z{i}"]) for i in range(3)])
            salient = [
                SalientIn(token=s, token_id=i, amplification=1.0,
                          mappings=[MappingIn(token=m, token_id=j, logit=1.0) for j, m in enumerate(ms)])
                for i, (s, ms) in enumerate(rows)
            ]  # fmt: skip
            heads.append(HeadSalientIn(layer=layer, head=head, salient=salient))
    grid = [[0.5] * info.n_heads for _ in range(info.n_layers)]
    pets = OperationScoresIn(name="pets", category="custom", k=1, n_pairs=2, scores=grid, suppression=grid)
    return AnalysisIn(
        model=info.name, settings={"source": "residual"}, heads=heads, operations={"pets": pets}
    )


def test_backfill_computes_relations_for_an_older_analysis(store) -> None:  # noqa: ANN001
    info = model_info()
    user = OperationIn(name="pets", category="custom", pairs=[("dog", "x"), ("Tree", "TREE")], origin="user")
    store.save_analysis(info, _word_analysis(info), settings_key="k", operations=[user])
    assert store.needs_relations("tiny")
    assert backfill_relations(store, "tiny") == 12
    assert backfill_relations(store, "tiny") == 0  # nothing missing now
    copy = {r.relation: r for r in store.get_head("tiny", 0, 0).relations}
    assert copy["copy"].text() == "3 of 3 rows: maps to itself (or a case/space variant)"
    assert copy["operation:general_copying"].rows == 3  # the built-in operations are checked
    assert copy["operation:pets"].rows == 2  # and the analysis' own
    capitals = store.get_head("tiny", 1, 1).relations
    assert capitals[0].relation == "operation:country_to_capital" and capitals[0].label == "country → capital"
    assert [(h.layer, h.head) for h in store.heads_with_relation("operation:country_to_capital")] == [(1, 1)]


def test_ensure_analysis_backfills_without_loading_the_model(store, monkeypatch) -> None:  # noqa: ANN001
    info = model_info("gemma-3-270m")  # an alias, so that ensure_analysis resolves it; never loaded
    store.save_analysis(info, _word_analysis(info), settings_key="k")
    # Its attention patterns are stored too: nothing is left that needs the model.
    grid = [[0.0] * info.n_heads for _ in range(info.n_layers)]
    store.save_patterns(
        info, PatternsIn(settings={}, scores={"induction": grid}), settings_key=PatternSettings().key()
    )
    monkeypatch.setattr("describer.analyze.load_model", lambda *a, **k: pytest.fail("loaded the model"))
    assert ensure_analysis(store, "gemma-3-270m") == "gemma-3-270m"
    assert store.get_head("gemma-3-270m", 1, 1).relations[0].relation == "operation:country_to_capital"
    assert not store.needs_relations("gemma-3-270m")


def test_a_0003_database_gains_the_relation_table(url: str) -> None:
    from store.db import code_head, current_revision, upgrade_schema
    from store.engine import make_engine

    engine = make_engine(url)
    upgrade_schema(engine, "0003_description_score")
    with engine.connect() as conn:
        assert "head_relation" not in inspect(conn).get_table_names()
    engine.dispose()
    with open_store(url) as store:
        assert current_revision(store.engine) == code_head()  # later revisions apply too
        info = model_info()
        store.save_analysis(info, with_relations(analysis(info), RELATIONS), settings_key="k")
        assert len(store.get_head("tiny", 1, 2).relations) == 2


def test_a_new_user_operation_recomputes_the_relations(store) -> None:  # noqa: ANN001
    info = model_info()
    store.save_analysis(info, _word_analysis(info), settings_key="k")
    backfill_relations(store, "tiny")
    assert "operation:capitals" not in {r.relation for r in store.get_head("tiny", 1, 1).relations}
    mine = OperationIn(
        name="capitals", category="custom", pairs=[("France", "Paris"), ("Peru", "Lima")], origin="user"
    )
    grid = [[0.1] * 4 for _ in range(3)]
    scores = OperationScoresIn(
        name="capitals", category="custom", k=1, n_pairs=2, scores=grid, suppression=grid
    )
    store.save_analysis(info, AnalysisIn(model="tiny", settings={}, operations={"capitals": scores}),
                        settings_key="k", operations=[mine])  # fmt: skip
    assert backfill_relations(store, "tiny") == 0  # relations are there: nothing is missing
    assert backfill_relations(store, "tiny", settings_key="k", replace=True) == 12
    found = {r.relation: r for r in store.get_head("tiny", 1, 1).relations}
    assert found["operation:capitals"].rows == 2 and found["operation:country_to_capital"].rows == 3
