"""The store's API on SQLite and PostgreSQL: schema, idempotent saves, validation, ratings,
search, description scores and schema versions (export and import: ``test_store_io``)."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from describer.errors import HeadmapsError
from store import RATING_LABELS, open_store
from store import tables as S
from store.records import DescriptionScoreIn, RatingIn
from tests._storedb import ENGINES, analysis, counts, definitions, description, make_url, model_info


@pytest.fixture(params=ENGINES)
def url(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    yield from make_url(request.param, tmp_path)


@pytest.fixture()
def store(url: str):  # noqa: ANN201
    with open_store(url) as s:
        yield s


def test_migrated_schema_matches_the_orm(store) -> None:  # noqa: ANN001
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), S.Base.metadata)
    # The full-text index lives outside the ORM (FTS5 table / expression index).
    diff = [d for d in diff if "description_fts" not in str(d) and "ix_description_fts" not in str(d)]
    assert diff == []


def test_save_analysis_round_trips_and_is_idempotent(store) -> None:  # noqa: ANN001
    info, data = model_info(), analysis(model_info())
    first = store.save_analysis(info, data, settings_key="key1", operations=definitions())
    before = counts(store)
    assert before["head"] == 12 and before["salient_token"] == 36 and before["mapped_token"] == 72
    assert before["operation_score"] == 24
    assert store.save_analysis(info, data, settings_key="key1", operations=definitions()) == first
    assert counts(store) == before
    assert store.has_analysis("tiny", "key1") and not store.has_analysis("tiny", "other")
    assert store.stored_operations("tiny", "key1") == {"copy", "capital"}
    assert store.stored_operations("tiny", "key1", k=5) == set()

    view = store.get_head("tiny", 2, 3)
    head = data.heads[2 * 4 + 3]
    assert [s.token for s in view.salient] == [s.token for s in head.salient]
    assert [m.logit for m in view.salient[1].mappings] == [m.logit for m in head.salient[1].mappings]
    assert view.salient[0].amplification == head.salient[0].amplification
    rel = {o.name: o.relation for o in view.operations}
    assert rel == {n: data.operations[n].scores[2][3] for n in ("copy", "capital")}
    assert [o.relation for o in view.operations] == sorted(rel.values(), reverse=True)
    assert store.operation_grid("tiny", "copy") == data.operations["copy"].scores
    assert store.operation_grid("tiny", "copy", suppression=True) == data.operations["copy"].suppression


def test_new_operations_are_added_to_a_stored_analysis(store) -> None:  # noqa: ANN001
    info = model_info()
    store.save_analysis(
        info, analysis(info, ops=("copy",)), settings_key="k", operations=definitions(("copy",))
    )
    more = analysis(info, ops=("capital",)).model_copy(update={"heads": []})
    store.save_analysis(info, more, settings_key="k", operations=definitions(("capital",)))
    assert store.stored_operations("tiny", "k") == {"copy", "capital"}
    assert counts(store)["analysis"] == 1 and counts(store)["salient_token"] == 36
    # Different pairs under the same name are a different operation, not yet scored.
    other = definitions(("copy",))[0].model_copy(update={"pairs": [("x", "y")]})
    keys = store.stored_operation_keys("tiny", "k")
    from store import operation_hash

    assert ("copy", operation_hash(other.pairs)) not in keys


def test_invalid_analysis_is_rejected_before_writing(store) -> None:  # noqa: ANN001
    info = model_info()
    bad = analysis(info)
    bad.heads[-1].head = 4  # n_heads is 4
    with pytest.raises(HeadmapsError, match="head 4 out of range"):
        store.save_analysis(info, bad, settings_key="k")
    bad = analysis(info)
    bad.operations["copy"].scores.pop()
    with pytest.raises(HeadmapsError, match="not 3×4"):
        store.save_analysis(info, bad, settings_key="k")
    assert all(n == 0 for n in counts(store).values())
    store.save_analysis(info, analysis(info), settings_key="k")
    with pytest.raises(HeadmapsError, match="different model"):
        store.save_analysis(
            info.model_copy(update={"content_hash": "zzz"}), analysis(info), settings_key="k2"
        )


def test_descriptions_and_counts(store) -> None:  # noqa: ANN001
    info = model_info()
    store.save_analysis(info, analysis(info), settings_key="k")
    run = store.start_run("describe", "tiny", {"prompt": "describe_v1"})
    a = store.add_description(description(layer=1, head=2, run_id=run))
    store.add_description(description(layer=0, head=1, status="unclear", unclear=True, category="unclear"))
    store.add_description(description(layer=0, head=3, status="failed", reasoning=None, category=None))
    store.add_description(description(layer=2, head=2, llm_model="other"))
    store.finish_run(run, counts={"described": 1})
    assert store.get_run(run).status == "done" and store.get_run(run).counts == {"described": 1}
    assert store.described_heads("tiny", "sha1", "fake-llm") == {(1, 2), (0, 1)}
    assert store.described_heads("tiny", "sha1", "fake-llm", include_failed=True) == {(1, 2), (0, 1), (0, 3)}
    assert store.description_counts("tiny", "sha1", "fake-llm") == {
        "heads": 12,
        "described": 2,
        "unclear": 1,
        "failed": 1,
    }
    view = store.get_head("tiny", 1, 2)
    assert [d.id for d in view.descriptions] == [a] and view.descriptions[0].tags == ["geography"]
    summary = store.get_model("tiny")
    assert (summary.heads, summary.described, summary.unclear) == (12, 4, 1)
    for bad, match in (
        (description(layer=3), "layer 3 out of range"),
        (description(head=7), "head 7 out of range"),
        (description(model="nope"), "unknown model 'nope'"),
        (description(category="vibes"), "unknown category"),
        (description(run_id=999), "no run with id 999"),
    ):
        with pytest.raises(HeadmapsError, match=match):
            store.add_description(bad)
    assert counts(store)["description"] == 4


def test_rerating_replaces_and_keeps_history(store) -> None:  # noqa: ANN001
    info = model_info()
    store.register_model(info)
    did = store.add_description(description())
    store.add_rating(RatingIn(description_id=did, rater="ann", label="plausible"))
    store.add_rating(RatingIn(description_id=did, rater="bob", label="not_plausible", comment="no"))
    store.add_rating(RatingIn(description_id=did, rater="ann", label="partially_plausible"))
    current = store.ratings_for(did)
    assert {(r.rater, r.label) for r in current} == {("ann", "partially_plausible"), ("bob", "not_plausible")}
    history = store.ratings_for(did, history=True)
    assert [(r.rater, r.label, r.is_current) for r in history] == [
        ("ann", "plausible", False),
        ("bob", "not_plausible", True),
        ("ann", "partially_plausible", True),
    ]
    d = store.get_head("tiny", 0, 0).descriptions[0]
    assert len(d.ratings) == 2 and len(d.history) == 3
    with pytest.raises(HeadmapsError, match="unknown rating label 'great'"):
        store.add_rating(RatingIn(description_id=did, rater="ann", label="great"))
    with pytest.raises(HeadmapsError, match="no description with id 999"):
        store.add_rating(RatingIn(description_id=999, rater="ann", label="plausible"))
    assert len(store.ratings_for(did, history=True)) == 3


def test_twenty_threads_rating_at_once(store) -> None:  # noqa: ANN001
    store.register_model(model_info())
    did = store.add_description(description())
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def rate(i: int) -> None:
        try:
            barrier.wait()
            # Ten raters, each rating twice: the second rating replaces the first.
            store.add_rating(RatingIn(description_id=did, rater=f"r{i % 10}", label=RATING_LABELS[i % 4]))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=rate, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = store.ratings_for(did, history=True)
    assert len(history) == 20 and len({r.id for r in history}) == 20
    current = store.ratings_for(did)
    assert sorted(r.rater for r in current) == sorted(f"r{i}" for i in range(10))


def test_search_finds_ranks_and_filters(store) -> None:  # noqa: ANN001
    info = model_info()
    store.save_analysis(info, analysis(info), settings_key="k", operations=definitions())
    strong = store.add_description(
        description(layer=2, head=1, reasoning="Capital cities: the head maps each country to its capital.",
                    pattern="country to capital city", inputs="countries and capitals")
    )  # fmt: skip
    weak = store.add_description(
        description(layer=0, head=2, reasoning="Mostly copying, sometimes a capital letter.",
                    pattern="copying tokens", inputs="names", category="in_context_identification")
    )  # fmt: skip
    store.add_description(
        description(layer=1, head=1, reasoning="Past tense of verbs.", pattern="verb to past")
    )
    hits = store.search("capital")
    assert [h.description_id for h in hits] == [strong, weak]
    assert hits[0].score > hits[1].score and "[" in hits[0].text
    assert (hits[0].model, hits[0].layer, hits[0].head) == ("tiny", 2, 1)
    assert [h.description_id for h in store.search("capitals countries")] == [strong]
    assert store.search("verbs")[0].layer == 1  # stemmed
    assert store.search("zebra") == [] and store.search('"; DROP TABLE description; --') == []
    assert [h.description_id for h in store.search("capital", layer_max=1)] == [weak]
    assert [h.description_id for h in store.search("capital", layer_min=1)] == [strong]
    assert [h.description_id for h in store.search("capital", category="in_context_identification")] == [weak]
    assert store.search("capital", unclear=True) == []
    threshold = analysis(info).operations["copy"].scores[2][1]
    assert strong in [h.description_id for h in store.search("capital", min_scores={"copy": threshold})]
    assert strong not in [
        h.description_id for h in store.search("capital", min_scores={"copy": threshold + 1e-9})
    ]
    store.add_rating(RatingIn(description_id=weak, rater="ann", label="plausible"))
    assert [h.description_id for h in store.search("capital", label="plausible")] == [weak]
    assert [h.description_id for h in store.search("capital", model="tiny", limit=1)] == [strong]
    with pytest.raises(HeadmapsError, match="unknown model"):
        store.search("capital", model="nope")


def test_description_scores_replace_list_show_and_cascade(store) -> None:  # noqa: ANN001
    info = model_info()
    store.save_analysis(info, analysis(info), settings_key="k")
    a = store.add_description(description(layer=1, head=2))
    b = store.add_description(description(layer=0, head=3))
    first = store.add_description_score(
        DescriptionScoreIn(description_id=a, scorer="simulation", llm_model="j1", score=0.5, details={"n": 4})
    )
    store.add_description_score(
        DescriptionScoreIn(description_id=a, scorer="simulation", llm_model="j2", score=-0.25)
    )
    store.add_description_score(
        DescriptionScoreIn(description_id=b, scorer="operation_agreement", llm_model="j1", score=None,
                           details={"raw": "???"})
    )  # fmt: skip
    # Same description, scorer and LLM: the new score replaces the old one.
    second = store.add_description_score(
        DescriptionScoreIn(description_id=a, scorer="simulation", llm_model="j1", score=1.0, details={"n": 5})
    )
    assert second != first
    rows = store.description_scores("tiny")
    assert [(r.layer, r.head, r.scorer, r.llm_model, r.score) for r in rows] == [
        (0, 3, "operation_agreement", "j1", None),
        (1, 2, "simulation", "j1", 1.0),
        (1, 2, "simulation", "j2", -0.25),
    ]
    assert [r.score for r in store.description_scores(scorer="simulation", llm_model="j1")] == [1.0]
    assert store.description_scores(scorer="nothing") == []
    shown = store.get_head("tiny", 1, 2).descriptions[0].scores
    assert [(s.llm_model, s.score, s.details) for s in shown] == [("j1", 1.0, {"n": 5}), ("j2", -0.25, {})]
    assert store.get_description(b).scores[0].details == {"raw": "???"}
    with pytest.raises(HeadmapsError, match="no description with id 999"):
        store.add_description_score(
            DescriptionScoreIn(description_id=999, scorer="simulation", llm_model="j", score=0.0)
        )
    with pytest.raises(HeadmapsError, match="finite"):
        store.add_description_score(
            DescriptionScoreIn(description_id=a, scorer="simulation", llm_model="j", score=math.nan)
        )
    with pytest.raises(HeadmapsError, match="unknown model"):
        store.description_scores("nope")
    with store.write() as session:
        session.execute(S.Description.__table__.delete().where(S.Description.id == a))
    assert [r.description_id for r in store.description_scores()] == [b]


def test_old_schema_is_upgraded_and_newer_refused(url: str) -> None:
    from store.db import check_revision, code_head, current_revision, upgrade_schema
    from store.engine import make_engine

    engine = make_engine(url)
    upgrade_schema(engine, "0001_initial")
    with engine.begin() as conn:  # a description written by the first version
        conn.execute(
            text(
                "INSERT INTO model (name, source, kind, family, n_layers, n_heads, n_kv_heads, d_model, vocab_size,"
                " created_at) VALUES ('old', 's', 'dir', 'llama', 1, 1, 1, 8, 10, '2024-01-01 00:00:00')"
            )
        )
        conn.execute(text('INSERT INTO head (model_id, layer, "index") VALUES (1, 0, 0)'))
        conn.execute(text(
            "INSERT INTO description (head_id, prompt_name, prompt_sha, rendered_prompt, llm_model, llm_host,"
            " params, raw_response, reasoning, unclear, tags, status, created_at) VALUES (1, 'p', 's', 'r', 'l',"
            " 'h', '{}', 'raw', 'an ancient zeppelin head', false, '[]', 'ok', '2024-01-01 00:00:00')"
        ))  # fmt: skip
    with pytest.raises(HeadmapsError, match="older schema version.*headmaps db upgrade"):
        open_store(url, upgrade=False)
    with open_store(url) as store:
        assert current_revision(store.engine) == code_head()
        assert [h.model for h in store.search("zeppelin")] == ["old"]
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(HeadmapsError, match="newer than this headmaps"):
        open_store(url)
    with pytest.raises(HeadmapsError, match="newer"):
        check_revision(engine, allow_old=True)
    engine.dispose()


def test_a_0002_database_gains_the_score_table(url: str) -> None:
    from store.db import code_head, current_revision, upgrade_schema
    from store.engine import make_engine

    engine = make_engine(url)
    upgrade_schema(engine, "0002_description_search")
    with engine.connect() as conn:
        assert "description_score" not in inspect(conn).get_table_names()
    engine.dispose()
    with open_store(url) as store:
        assert current_revision(store.engine) == code_head()
        store.register_model(model_info())
        did = store.add_description(description())
        store.add_description_score(
            DescriptionScoreIn(description_id=did, scorer="simulation", llm_model="j", score=0.75)
        )
        assert store.get_description(did).scores[0].score == 0.75


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(HeadmapsError, match="not a headmaps database"):
        open_store(str(path))
    with pytest.raises(HeadmapsError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(HeadmapsError, match="unsupported database"):
        open_store("mysql://x@y/z")


def test_sqlite_settings(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "s.db")) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_default_url_uses_env_then_platformdirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from store import default_url

    monkeypatch.setenv("HEADMAPS_DATABASE_URL", "sqlite:///x.db")
    assert default_url() == "sqlite:///x.db"
    monkeypatch.delenv("HEADMAPS_DATABASE_URL")
    monkeypatch.setattr("platformdirs.user_data_dir", lambda name: str(tmp_path / name))
    assert default_url() == f"sqlite:///{tmp_path / 'headmaps' / 'headmaps.db'}"


def test_operation_grid_marks_missing_and_unknown(store) -> None:  # noqa: ANN001
    info = model_info()
    store.save_analysis(info, analysis(info, ops=("copy",)), settings_key="k")
    with pytest.raises(HeadmapsError, match="no scores for operation 'capital'"):
        store.operation_grid("tiny", "capital")
    assert not any(math.isnan(v) for row in store.operation_grid("tiny", "copy") for v in row)


def test_the_store_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, store, store.api, store.export, store.importer, store.fulltext; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
