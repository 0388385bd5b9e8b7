"""``headmaps evaluate descriptions``, ``evaluate ratings`` and ``report`` end to end: a planted
store in a temporary SQLite file, and a fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store import open_store
from store.records import RatingIn
from tests import _fake_llm
from tests._cli import assert_ok, assert_user_error, invoke
from tests._fake_llm import FakeOpenAIServer
from tests._storedb import model_info
from tests.test_scoring import fill, judge_answer


@pytest.fixture()
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HEADMAPS_CACHE_DIR", str(tmp_path / "cache"))
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    with open_store(url) as store:
        fill(store)
    return url


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    # The fake server answers each prompt with ``answer_for``: make it the planted model's judge.
    monkeypatch.setattr(_fake_llm, "answer_for", lambda prompt: judge_answer(prompt))
    with FakeOpenAIServer() as fake:
        yield fake


def test_evaluate_descriptions_stores_scores_and_reruns_from_the_cache(db: str, server) -> None:  # noqa: ANN001
    args = ("evaluate", "descriptions", "tiny", "--base-url", server.base_url, "--llm-model", "fake-model")
    result = invoke(*args, "--db", db, "--json", "--concurrency", "4")
    assert_ok(result)
    summary = json.loads(result.stdout)
    assert summary["model"] == "tiny" and summary["llm_model"] == "fake-model"
    assert summary["simulation"]["mean"] == 1.0 and summary["simulation"]["scored"] == 12
    agreement = summary["operation_agreement"]
    assert (agreement["positives"], agreement["controls"]) == (4, 4)
    assert agreement["recall"] == 0.75
    assert summary["llm_calls"] == server.calls == 12 + 8
    with open_store(db) as store:
        assert len(store.description_scores("tiny", llm_model="fake-model")) == 20

    again = invoke(*args, "--db", db, "--json")
    assert_ok(again)
    assert json.loads(again.stdout)["llm_calls"] == 0 and server.calls == 20

    table = invoke(*args, "--db", db, "--limit", "2")
    assert_ok(table)
    assert "simulation" in table.stdout and "precision" in table.stdout and "recall 0.75" in table.stdout
    assert "prompt did not show" in table.stdout

    # `show` prints each description's automatic scores beside its ratings.
    with open_store(db) as store:
        scored = store.description_scores("tiny", llm_model="fake-model")[0]
    shown = invoke("show", "tiny", f"{scored.layer}.{scored.head}", "--db", db)
    assert_ok(shown)
    assert f"{scored.scorer} score {scored.score:.3f} (judged by fake-model)" in shown.stdout


def test_evaluate_descriptions_errors(db: str, server, tmp_path: Path) -> None:  # noqa: ANN001
    endpoint = ("--base-url", server.base_url, "--llm-model", "fake-model")
    assert_user_error(
        invoke("evaluate", "descriptions", "nope", *endpoint, "--db", db), "unknown model 'nope'"
    )
    with open_store(db) as store:
        store.register_model(model_info("bare", 1, 1))
    assert_user_error(
        invoke("evaluate", "descriptions", "bare", *endpoint, "--db", db), "no descriptions to score"
    )
    assert_user_error(
        invoke("evaluate", "descriptions", "tiny", "--base-url", server.base_url, "--db", db),
        "--base-url needs --llm-model",
    )
    assert_user_error(
        invoke(
            "evaluate",
            "descriptions",
            "tiny",
            "--base-url",
            server.base_url,
            "--llm-model",
            "gpt-9",
            "--db",
            db,
        ),
        "unknown LLM model 'gpt-9'",
    )
    assert server.calls == 0


def test_evaluate_ratings_tables_and_json(db: str) -> None:
    with open_store(db) as store:
        ids = [d.id for la in range(3) for d in store.get_head("tiny", la, 0).descriptions]
        for rater, labels in (
            ("ann", ["plausible"] * 3),
            ("bob", ["plausible", "not_plausible", "plausible"]),
        ):
            for did, label in zip(ids, labels, strict=True):
                store.add_rating(RatingIn(description_id=did, rater=rater, label=label))
    result = invoke("evaluate", "ratings", "tiny", "--db", db, "--json")
    assert_ok(result)
    report = json.loads(result.stdout)
    assert report["ratings"] == 6 and report["raters"] == ["ann", "bob"]
    assert report["overall"]["counts"]["plausible"] == 5
    assert report["agreement"]["statistic"] == "cohen_kappa" and report["agreement"]["units"] == 3
    table = invoke("evaluate", "ratings", "--db", db)  # the only stored model
    assert_ok(table)
    assert "6 rating(s) by 2 rater(s)" in table.stdout and "cohen_kappa" in table.stdout
    assert "knowledge_recalling" in table.stdout and "LLM: fake-llm" in table.stdout
    assert_user_error(invoke("evaluate", "ratings", "nope", "--db", db), "unknown model 'nope'")


def test_report_writes_one_html_file(db: str, server, tmp_path: Path) -> None:  # noqa: ANN001
    endpoint = ("--base-url", server.base_url, "--llm-model", "fake-model")
    assert_ok(invoke("evaluate", "descriptions", "tiny", *endpoint, "--db", db, "--limit", "1"))
    path = tmp_path / "out" / "report.html"
    assert_user_error(invoke("report", "tiny", "-o", path, "--db", db), "does not exist")
    path.parent.mkdir()
    result = invoke("report", "tiny", "-o", path, "--db", db)
    assert_ok(result)
    html = path.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "Copies the input token." in html
    assert "report written to" in result.stdout
    assert "simulation by fake-model: <b>1.00</b> (unseen sources)" in html
    assert "operation agreement by fake-model: <b>1.00</b> (positive, copy)" in html
    with open_store(db) as store:
        store.register_model(model_info("bare", 1, 1))
    assert_user_error(invoke("report", "bare", "-o", path, "--db", db), "no analysis")
