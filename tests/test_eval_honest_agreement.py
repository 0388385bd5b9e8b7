"""Operation agreement without circularity: a description written from a prompt that listed the
head's operations (``facts``, ``salient_evidence``) can name the operation by copying it, so each
score records its description's template and whether that prompt showed an operation the scorer
asks about, and the summary, the table and ``--json`` report the two groups apart. Scores
stored before the group was recorded are grouped from the description's stored prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import prompts
from describer.evidence import head_evidence
from evaluation.scoring import BLIND, OPERATION_AGREEMENT, SHOWN, operations_in_prompt, summarize
from store import open_store
from store.labels import CATEGORY_MEANINGS
from store.records import DescriptionScoreIn, HeadView, MappingOut, OperationIn, RelationOut, SalientOut
from tests import _fake_llm
from tests._cli import assert_ok, invoke
from tests._fake_llm import FakeOpenAIServer
from tests._storedb import description, model_info
from tests.test_scoring import N_HEADS, N_LAYERS, PATTERNS, FakeJudge, judge_answer, planted, score

TEMPLATES = {(0, 0): "facts", (0, 1): "salient_evidence", (0, 2): "facts", (0, 3): "salient_evidence"}
"""Layer 0 is described from the prompts that list operation scores; the rest from ``salient``.
0.0 and 0.1 copy (score 0.8): their prompts show ``copy``. 0.2 and 0.3 score nothing worth
showing: their prompts name no operation, so they count as blind."""


def fill(s) -> None:  # noqa: ANN001
    ops = [
        OperationIn(name="copy", category="algorithmic", pairs=[(" cat", " cat"), (" dog", " dog")]),
        OperationIn(name="capital", category="knowledge", pairs=[(" France", " Paris")]),
    ]
    s.save_analysis(
        model_info(n_layers=N_LAYERS, n_heads=N_HEADS), planted(), settings_key="k", operations=ops
    )
    for la in range(N_LAYERS):
        for h in range(N_HEADS):
            view = s.get_head("tiny", la, h)
            view = view.model_copy(update={"salient": view.salient[:3]})  # three sources held out
            rendered = prompts.render(
                TEMPLATES.get((la, h), "salient"), **head_evidence(view, N_LAYERS, N_HEADS)
            )
            s.add_description(
                description(
                    layer=la,
                    head=h,
                    prompt_name=rendered.name,
                    prompt_sha=rendered.sha256,
                    rendered_prompt=rendered.text,
                    pattern=PATTERNS.get((la, h), f"Maps words to unrelated words ({la}.{h})."),
                    inputs="Short tokens.",
                )
            )


@pytest.fixture()
def store(tmp_path: Path):  # noqa: ANN201
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        fill(s)
        yield s


def test_agreement_is_reported_apart_for_prompts_that_showed_operations(store, tmp_path: Path) -> None:  # noqa: ANN001
    summary = score(store, FakeJudge("perfect"), tmp_path, controls=100)
    shown, blind = summary.operation_agreement_shown, summary.operation_agreement
    # Pooled, as before, this was 4 positives with precision and recall 0.75; the two copying heads
    # whose prompt listed "copy" agree trivially, and are now apart.
    assert shown.group == SHOWN == "prompt showed operations (circular)"
    assert (shown.positives, shown.controls, shown.true_positives) == (2, 0, 2)
    assert shown.by_prompt == {"facts": 1, "salient_evidence": 1} and shown.recall == 1.0
    assert blind.group == BLIND == "prompt did not show operations"
    assert (blind.positives, blind.controls) == (2, 8)
    assert (blind.true_positives, blind.false_negatives, blind.false_positives, blind.true_negatives) == (
        1,
        1,
        1,
        7,
    )
    assert blind.precision == 0.5 and blind.recall == 0.5
    assert blind.by_prompt == {"facts": 1, "salient": 8, "salient_evidence": 1}
    assert blind.inferred == shown.inferred == 0
    rows = {
        (r.layer, r.head): r.details for r in store.description_scores("tiny", scorer=OPERATION_AGREEMENT)
    }
    assert rows[(0, 0)]["description_prompt"] == "facts" and rows[(0, 0)]["prompt_showed_operations"] is True
    assert rows[(0, 0)]["operations_in_prompt"] == ["copy"]
    assert rows[(0, 2)]["description_prompt"] == "facts" and rows[(0, 2)]["prompt_showed_operations"] is False
    assert rows[(2, 3)]["description_prompt"] == "salient" and rows[(2, 3)]["operations_in_prompt"] == []


def test_scores_stored_before_the_group_existed_are_grouped_from_the_stored_prompt(
    store, tmp_path: Path
) -> None:  # noqa: ANN001
    recorded = score(store, FakeJudge("perfect"), tmp_path, controls=100)
    for r in store.description_scores("tiny", scorer=OPERATION_AGREEMENT):
        old = {
            k: v
            for k, v in r.details.items()
            if k not in ("description_prompt", "prompt_showed_operations", "operations_in_prompt")
        }
        store.add_description_score(
            DescriptionScoreIn(
                description_id=r.description_id,
                scorer=r.scorer,
                llm_model=r.llm_model,
                score=r.score,
                details=old,
            )
        )
    again = summarize(store, "tiny", "judge")
    assert again.operation_agreement.inferred == 10 and again.operation_agreement_shown.inferred == 2
    for new, old in (
        (again.operation_agreement, recorded.operation_agreement),
        (again.operation_agreement_shown, recorded.operation_agreement_shown),
    ):
        assert new.model_dump(exclude={"inferred"}) == old.model_dump(exclude={"inferred"})


def test_json_and_table_print_both_groups_labelled(
    store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    monkeypatch.setenv("HEADMAPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_fake_llm, "answer_for", lambda prompt: judge_answer(prompt))
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with FakeOpenAIServer() as server:
        args = (
            "evaluate",
            "descriptions",
            "tiny",
            "--base-url",
            server.base_url,
            "--llm-model",
            "fake-model",
        )
        result = invoke(*args, "--db", db, "--json")
        assert_ok(result)
        summary = json.loads(result.stdout)
        assert summary["operation_agreement"]["group"] == "prompt did not show operations"
        assert summary["operation_agreement"]["positives"] == 2
        assert summary["operation_agreement_shown"]["group"] == "prompt showed operations (circular)"
        assert summary["operation_agreement_shown"]["positives"] == 2
        table = invoke(*args, "--db", db)
        assert_ok(table)
    text = table.stdout
    assert "operation agreement, prompt did not show operations (threshold 0.3): precision" in text
    assert (
        "operation agreement, prompt showed operations (circular) (threshold 0.3): precision 1.00, recall 1.00"
        in text
    )
    assert "is circular" in text


# --- which prompts show operations ----------------------------------------------------------------


def view(relations: list[RelationOut], operations: list | None = None) -> HeadView:
    words = [f" w{i:02d}" for i in range(15)]
    return HeadView(
        model="tiny",
        layer=1,
        head=0,
        analysis_id=1,
        settings_key="k",
        settings={},
        salient=[
            SalientOut(
                rank=i,
                token=w,
                token_id=i,
                amplification=1.0,
                mappings=[MappingOut(token=w, token_id=i, logit=1.0)],
            )
            for i, w in enumerate(words)
        ],
        operations=operations or [],
        relations=relations,
        patterns={},
        descriptions=[],
    )


def test_the_templates_own_text_is_not_evidence() -> None:
    # salient.j2 says "a relation such as country to capital"; facts.j2's instructions quote
    # "12 of 15 rows: country → capital". Neither is this head's evidence.
    plain = prompts.render(
        "salient", salient=[{"token": " a", "mappings": [{"token": " b"}]}], categories=CATEGORY_MEANINGS
    ).text
    assert operations_in_prompt(plain, ["capital", "copy"], "salient") == []
    assert operations_in_prompt(plain, ["capital"]) == [
        "capital"
    ]  # without the template: every line searched
    facts = prompts.render("facts", **head_evidence(view([]), 4, 2)).text
    assert "country → capital" in facts
    assert operations_in_prompt(facts, ["country_to_capital"], "facts") == []
    assert operations_in_prompt(facts, ["country_to_capital"], "/no/such/template.j2") == [
        "country_to_capital"
    ]


def test_a_relation_fact_naming_the_operation_shows_it() -> None:
    fact = RelationOut(
        relation="operation:country_to_capital",
        label="country → capital",
        rows=13,
        n_rows=15,
        fraction=13 / 15,
        examples=[],
    )
    text = prompts.render("facts", **head_evidence(view([fact]), 4, 2)).text
    assert "13 of 15 rows (most rows): country → capital" in text
    assert operations_in_prompt(text, ["country_to_capital", "verb_past_tense"], "facts") == [
        "country_to_capital"
    ]
