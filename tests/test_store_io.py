"""Export and import of the store on SQLite and PostgreSQL: JSON and CSV round trips, files from
before description scores and head relations, and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from describer.errors import HeadmapsError
from store import export_store, import_file, open_store
from store import tables as S
from store.records import DescriptionScoreIn, RatingIn, RelationIn
from tests._storedb import ENGINES, analysis, counts, definitions, description, make_url, model_info


@pytest.fixture(params=ENGINES)
def url(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    yield from make_url(request.param, tmp_path)


@pytest.fixture()
def store(url: str):  # noqa: ANN201
    with open_store(url) as s:
        yield s


RELATIONS = {
    (0, 1): [
        RelationIn(relation="copy", label="maps to itself", rows=3, n_rows=3, examples=[(" w010", "▁W010")]),
        RelationIn(relation="script:inputs:latin", label='inputs "quoted", ✓', rows=2, n_rows=3),
    ],
    (2, 3): [RelationIn(relation="operation:capital", label="country → capital", rows=1, n_rows=3,
                        examples=[(" é,\n", ' "x"'), ("a", "b")])],
}  # fmt: skip


def _fill(store) -> None:  # noqa: ANN001
    info = model_info()
    store.save_analysis(info, analysis(info), settings_key="k", operations=definitions())
    other = model_info("other", 2, 2)
    store.save_analysis(
        other, analysis(other, ops=("copy",)), settings_key="k", operations=definitions(("copy",))
    )
    store.save_relations("tiny", RELATIONS)
    run = store.start_run("describe", "tiny", {"x": [1, 2]})
    did = store.add_description(description(layer=1, head=1, run_id=run, comment=None))
    store.add_description(description(layer=1, head=1, status="failed", reasoning="", tokens_in=None))
    store.add_description(description("other", 1, 0, reasoning='emoji ✓ and "quotes",\ncomma'))
    store.add_embedding(did, "minilm", [0.5, -1.25, 3.0])
    store.add_rating(RatingIn(description_id=did, rater="ann", label="plausible", comment='ok, "fine"'))
    store.add_rating(RatingIn(description_id=did, rater="ann", label="not_plausible"))
    store.add_description_score(
        DescriptionScoreIn(description_id=did, scorer="simulation", llm_model="judge", score=0.1 + 0.2,
                           details={"items": [{"source": " é", "predicted": 2, "correct": True}], "n": 3})
    )  # fmt: skip
    store.add_description_score(
        DescriptionScoreIn(description_id=did, scorer="operation_agreement", llm_model="judge", score=None,
                           details={"raw": 'not json, "quoted"\nline', "error": "no JSON object"})
    )  # fmt: skip
    store.finish_run(run, "interrupted", {"described": 1})


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_import_export_is_identical(store, url: str, tmp_path: Path, fmt: str) -> None:  # noqa: ANN001
    _fill(store)
    first = export_store(store, fmt=fmt, path=tmp_path / f"a.{fmt}")
    # Empty the database (keeping its schema) and import the file back.
    with store.write() as session:
        for table in reversed(S.Base.metadata.sorted_tables):
            session.execute(table.delete())
    assert counts(store)["description"] == 0
    added = import_file(store, tmp_path / f"a.{fmt}")
    assert (
        added["description"] == 3 and added["rating"] == 2 and added["mapped_token"] == 12 * 3 * 2 + 4 * 3 * 2
    )
    assert added["description_score"] == 2 and added["head_relation"] == 3
    assert [r.relation for r in store.get_head("tiny", 0, 1).relations] == ["copy", "script:inputs:latin"]
    assert store.get_head("tiny", 2, 3).relations[0].examples == [(" é,\n", ' "x"'), ("a", "b")]
    assert export_store(store, fmt=fmt) == first
    # Importing again adds nothing.
    assert sum(import_file(store, tmp_path / f"a.{fmt}").values()) == 0
    assert export_store(store, fmt=fmt) == first
    if fmt == "json":
        doc = json.loads(first)
        assert doc["format"] == "headmaps-export"
        assert {m["name"] for m in doc["tables"]["model"]} == {"tiny", "other"}
        assert json.loads(export_store(store, "other"))["tables"]["description"][0]["model"] == "other"
    assert store.search("emoji")[0].model == "other"  # the FTS index follows imported rows


def test_an_export_from_before_scores_still_imports(store, tmp_path: Path) -> None:  # noqa: ANN001
    _fill(store)
    doc = json.loads(export_store(store))
    del doc["tables"]["description_score"], doc["tables"]["head_relation"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    with store.write() as session:
        for table in reversed(S.Base.metadata.sorted_tables):
            session.execute(table.delete())
    added = import_file(store, old)
    assert added["description"] == 3 and added["description_score"] == 0 and added["head_relation"] == 0


def test_import_rejects_bad_files(store, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something"}')
    with pytest.raises(HeadmapsError, match="not a headmaps export"):
        import_file(store, bad)
    with pytest.raises(HeadmapsError, match="no such file"):
        import_file(store, tmp_path / "missing.json")
