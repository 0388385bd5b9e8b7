"""The store commands end to end on a tiny random Llama: ``analyze`` writing to the store
(idempotently), ``show``, ``export``, ``import``, ``db upgrade`` and ``db info``, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import delete

from evaluation.embeddings import embed_stored
from store import open_store
from store import tables as S
from store.records import RatingIn
from tests._cli import assert_ok, assert_user_error, invoke
from tests._storedb import ENGINES, description, make_url
from tests._tiny import build_bpe_tokenizer, builtin_words, save_tiny_llama


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = build_bpe_tokenizer(builtin_words("general_copying", "name_copying"))
    return save_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", tokenizer)


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    yield from make_url(request.param, tmp_path)


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADMAPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def analyze(tiny_dir: Path, db: str, *extra: object):  # noqa: ANN201
    return invoke(
        "analyze", tiny_dir, "--db", db, "--device", "cpu", "--top-tokens", "3", "--top-mappings", "2", *extra
    )


def test_rerun_with_an_operation_the_tokenizer_cannot_use_does_nothing(
    tiny_dir: Path, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--operations all`` skips (and records) what this tokenizer cannot use; the re-run then
    finds everything done instead of failing on the skipped operation."""
    first = analyze(tiny_dir, db, "--operations", "general_copying,year_to_following")
    assert_ok(first)
    assert "warning:" in first.stderr and "year_to_following" in first.stderr
    with open_store(db) as store:
        key = store.get_head("tiny-llama", 0, 0).settings_key
        assert store.stored_operations("tiny-llama", key) == {"general_copying", "year_to_following"}
        assert [o.name for o in store.get_head("tiny-llama", 0, 0).operations] == ["general_copying"]

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded although everything is stored")

    monkeypatch.setattr("describer.analyze.load_model", no_load)
    again = analyze(tiny_dir, db, "--operations", "general_copying,year_to_following")
    assert_ok(again)
    assert "already stored" in again.stdout


def test_analyze_writes_the_store_once(tiny_dir: Path, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_ok(analyze(tiny_dir, db, "--operations", "general_copying"))
    with open_store(db) as store:
        (model,) = store.list_models()
        assert (model.name, model.family, model.n_layers, model.n_heads, model.heads) == (
            "tiny-llama",
            "llama",
            2,
            4,
            8,
        )
        view = store.get_head("tiny-llama", 1, 3)
        assert len(view.salient) == 3 and all(len(s.mappings) == 2 for s in view.salient)
        assert [o.name for o in view.operations] == ["general_copying"]
        assert view.settings["top_tokens"] == 3 and "device" not in view.settings
        key = view.settings_key

    # The same model and settings again: nothing to do, and the model is not even loaded.
    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded although everything is stored")

    monkeypatch.setattr("describer.analyze.load_model", no_load)
    with open_store(db) as store:  # as a database from before relation evidence
        assert store.get_head("tiny-llama", 1, 3).relations
        with store.write() as session:
            session.execute(delete(S.HeadRelation))
    result = analyze(tiny_dir, db, "--operations", "general_copying")
    assert_ok(result)
    assert "already stored" in result.stdout
    with open_store(db) as store:  # computed from the stored salient mappings
        assert store.get_head("tiny-llama", 1, 3).relations and not store.needs_relations("tiny-llama")
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    # A new operation: only it is scored and added to the same analysis.
    result = analyze(tiny_dir, db, "--operations", "general_copying,name_copying")
    assert_ok(result)
    assert "salient mappings already stored" in result.stdout
    with open_store(db) as store:
        assert store.stored_operations("tiny-llama", key) == {"general_copying", "name_copying"}
        assert store.get_model("tiny-llama").analyses == 1
        assert len(store.get_head("tiny-llama", 0, 0).salient) == 3
        # Other settings are another analysis.
    assert_ok(analyze(tiny_dir, db, "--operations", "general_copying", "--no-norms", "--source", "embed"))
    with open_store(db) as store:
        assert store.get_model("tiny-llama").analyses == 2


def test_a_user_operation_added_later_recomputes_the_relations(
    tiny_dir: Path, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from describer import analyze as job
    from describer.maps.operations import Operation, builtin_operations

    copying = builtin_operations()["general_copying"]
    with open_store(db) as store:
        job.analyze_and_store(store, str(tiny_dir), [copying], top_tokens=3, top_mappings=2, device="cpu")
        calls: list[dict] = []
        real = job.backfill_relations
        monkeypatch.setattr(job, "backfill_relations", lambda *a, **k: calls.append(k) or real(*a, **k))
        mine = Operation(name="mine", category="custom", pairs=copying.pairs[:40], origin="/tmp/mine.json")
        job.analyze_and_store(
            store, str(tiny_dir), [copying, mine], top_tokens=3, top_mappings=2, device="cpu"
        )
        assert calls[-1]["replace"] is True
        assert store.stored_operations("tiny-llama", calls[-1]["settings_key"]) == {"general_copying", "mine"}
        assert all(
            store.get_head("tiny-llama", layer, head).relations for layer in (0, 1) for head in range(4)
        )


def test_analyze_no_store_and_json(tiny_dir: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    out = tmp_path / "r.json"
    assert_ok(analyze(tiny_dir, db, "--operations", "general_copying", "--no-store", "-o", out))
    assert json.loads(out.read_text())["model"] == "tiny-llama"
    assert not (tmp_path / "x.db").exists()
    assert_ok(analyze(tiny_dir, db, "--operations", "general_copying", "--json", out))
    with open_store(db) as store:
        assert store.get_model("tiny-llama").heads == 8


def test_show_export_import(tiny_dir: Path, db: str, tmp_path: Path) -> None:
    assert_ok(analyze(tiny_dir, db, "--operations", "general_copying"))
    with open_store(db) as store:
        did = store.add_description(description("tiny-llama", 1, 2, reasoning="Copies names."))
        store.add_rating(RatingIn(description_id=did, rater="ann", label="plausible", comment="good"))
        store.add_rating(RatingIn(description_id=did, rater="ann", label="partially_plausible"))
        embed_stored(store)  # as `headmaps describe` leaves it: `import` adds no vector the export lacks

    result = invoke("show", "tiny-llama", "1.2", "--db", db)
    assert_ok(result)
    for fragment in ("tiny-llama head L1.H2", "Salient operations", "general_copying", "Copies names.",
                     "rated partially_plausible by ann", "1 earlier rating"):  # fmt: skip
        assert fragment in result.stdout
    result = invoke("show", "1.2", "--json", "--db", db)  # the only stored model
    assert_ok(result)
    view = json.loads(result.stdout)
    assert (view["layer"], view["head"]) == (1, 2) and len(view["descriptions"][0]["history"]) == 2
    # analyze stored the head's relation evidence: at least the script of its inputs.
    assert any(r["relation"].startswith("script:inputs:") for r in view["relations"]), view["relations"]
    assert view["relations"][0]["summary"] in invoke("show", "1.2", "--db", db).stdout

    for fmt in ("json", "csv"):
        first = tmp_path / f"first.{fmt}"
        assert_ok(invoke("export", "--format", fmt, "-o", first, "--db", db))
        empty = f"sqlite:///{tmp_path / f'empty-{fmt}.db'}"
        result = invoke("import", first, "--db", empty)
        assert_ok(result)
        assert "1 model" in result.stdout
        second = tmp_path / f"second.{fmt}"
        assert_ok(invoke("export", "--format", fmt, "-o", second, "--db", empty))
        assert first.read_bytes() == second.read_bytes()
    assert zipfile.is_zipfile(tmp_path / "first.csv")
    result = invoke("export", "tiny-llama", "--db", db)
    assert_ok(result)
    assert json.loads(result.stdout)["tables"]["model"][0]["name"] == "tiny-llama"


def test_store_command_errors(tiny_dir: Path, db: str, tmp_path: Path) -> None:
    assert_ok(analyze(tiny_dir, db, "--operations", "general_copying"))
    assert_user_error(invoke("show", "tiny-llama", "2.0", "--db", db), "layer 2 out of range")
    assert_user_error(invoke("show", "tiny-llama", "0.4", "--db", db), "head 4 out of range")
    assert_user_error(invoke("show", "nope", "0.0", "--db", db), "unknown model 'nope'")
    assert_user_error(invoke("show", "tiny-llama", "x", "--db", db), "is not a head")
    assert_user_error(invoke("export", "--format", "xml", "--db", db), "unknown format")
    assert_user_error(invoke("export", "nope", "--db", db), "unknown model")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert_user_error(invoke("import", bad, "--db", db), "not a headmaps export")
    assert_user_error(invoke("show", "0.0", "--db", "mysql://u@h/d"), "unsupported database")


def test_db_upgrade_and_info(tmp_path: Path) -> None:
    from store.db import code_head, upgrade_schema
    from store.engine import make_engine

    db = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(db)
    upgrade_schema(engine, "0001_initial")
    engine.dispose()
    assert_user_error(invoke("db", "info", "--db", db), "older schema version", "headmaps db upgrade")
    result = invoke("db", "upgrade", "--db", db)
    assert_ok(result)
    assert f"0001_initial -> {code_head()}" in result.stdout
    result = invoke("db", "upgrade", "--db", db)
    assert_ok(result)
    assert "up to date" in result.stdout
    result = invoke("db", "info", "--db", db)
    assert_ok(result)
    assert f"schema: {code_head()}" in result.stdout
    # The default database comes from HEADMAPS_DATABASE_URL.
    result = invoke("db", "upgrade")
    assert_ok(result)
