"""Description scoring with fake LLM backends on a planted model: a perfect simulator scores 1,
a random one about 0, a description whose prompt showed every source is not simulated (counted
as ``no_unseen``), unusable answers are stored as failed with their raw text, a re-run sends
nothing, and precision/recall of operation agreement come out as planted."""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path

import pytest

import prompts
from describer.llm import Completion, GenerationParams, LLMBackend, Messages, ResponseCache
from evaluation.scoring import (
    OPERATION_AGREEMENT,
    SIMULATION,
    Asker,
    Scorer,
    ScoringSettings,
    shown_sources,
    summarize,
)
from store import open_store
from store.labels import CATEGORY_MEANINGS
from store.records import AnalysisIn, HeadSalientIn, MappingIn, OperationIn, OperationScoresIn, SalientIn
from tests._storedb import ENGINES, description, make_url, model_info

N_LAYERS, N_HEADS, N_SALIENT = 3, 4, 6
COPY_HEADS = {(0, 0), (0, 1), (1, 0)}
CAPITAL_HEADS = {(2, 3)}
PATTERNS = {
    (0, 0): "Copies the input token.",
    (0, 1): "Each token is copied to the output.",
    (1, 0): "Unclear",  # a copying head whose description misses it: a false negative
    (2, 3): "Maps each country to its capital city.",
    (1, 1): "Copies the input, or gives its capital city.",  # a low-score head: a false positive
}
SHOW_ALL = {(2, 0), (2, 1), (2, 2), (2, 3)}
"""Heads whose description prompt showed every stored source (no held-out ones) in this file's
store; ``fill`` alone (as other test files use it) holds three sources out of every prompt."""


def truth(layer: int, head: int, rank: int) -> str:
    return f" t{layer}{head}{rank}"


def planted() -> AnalysisIn:
    def grid(heads: set[tuple[int, int]], value: float) -> list[list[float]]:
        return [[value if (la, h) in heads else 0.0 for h in range(N_HEADS)] for la in range(N_LAYERS)]

    return AnalysisIn(
        model="tiny",
        settings={"top_tokens": N_SALIENT},
        heads=[
            HeadSalientIn(
                layer=la,
                head=h,
                salient=[
                    SalientIn(
                        token=f" s{la}{h}{r}",
                        token_id=r,
                        amplification=10.0 - r,
                        mappings=[
                            MappingIn(token=truth(la, h, r), token_id=1, logit=2.0),
                            MappingIn(token=f" u{la}{h}{r}", token_id=2, logit=1.0),
                        ],
                    )
                    for r in range(N_SALIENT)
                ],
            )
            for la in range(N_LAYERS)
            for h in range(N_HEADS)
        ],
        operations={
            "copy": OperationScoresIn(
                name="copy", category="algorithmic", k=1, n_pairs=2, scores=grid(COPY_HEADS, 0.8),
                suppression=grid(set(), 0.0),
            ),
            "capital": OperationScoresIn(
                name="capital", category="knowledge", k=10, n_pairs=2, scores=grid(CAPITAL_HEADS, 0.5),
                suppression=grid(set(), 0.0),
            ),
        },
    )  # fmt: skip


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    for url in make_url(request.param, tmp_path):
        with open_store(url) as s:
            fill(s, SHOW_ALL)
            yield s


def fill(s, show_all: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset()) -> None:  # noqa: ANN001
    """The planted model, analysed, with one description per head, written from the ``salient``
    prompt showing the first three sources (every source for the heads in ``show_all``)."""
    info = model_info(n_layers=N_LAYERS, n_heads=N_HEADS)
    ops = [
        OperationIn(name="copy", category="algorithmic", pairs=[(" cat", " cat"), (" dog", " dog")]),
        OperationIn(name="capital", category="knowledge", pairs=[(" France", " Paris")]),
    ]
    s.save_analysis(info, planted(), settings_key="k", operations=ops)
    for la in range(N_LAYERS):
        for h in range(N_HEADS):
            view = s.get_head("tiny", la, h)
            shown = view.salient if (la, h) in show_all else view.salient[:3]
            rendered = prompts.render(
                "salient",
                salient=[s_.model_dump() for s_ in shown],
                categories=CATEGORY_MEANINGS,
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


_ITEM = re.compile(r'^(\d+)\. ("(?:[^"\\]|\\.)*"): (.*)$', re.MULTILINE)
_CANDIDATE = re.compile(r'\((\d+)\) ("(?:[^"\\]|\\.)*")')


class FakeJudge(LLMBackend):
    """Answers the scoring prompts: ``perfect`` knows every head's true mapping, ``random``
    guesses (seeded), ``garbage`` never answers in JSON, ``repairable`` only on the repair."""

    model = "judge"
    host = "fake"

    def __init__(self, mode: str = "perfect") -> None:
        self.mode = mode
        self.calls = 0
        self.rng = random.Random(1)

    async def complete(self, messages: Messages, params: GenerationParams) -> Completion:
        self.calls += 1
        assert params.structured is False
        prompt = messages[0]["content"]
        if self.mode == "garbage" or (self.mode == "repairable" and len(messages) == 1):
            return Completion("I think the second one, probably.", 10, 5)
        return Completion(judge_answer(prompt, self.rng if self.mode == "random" else None), 50, 10)


def judge_answer(prompt: str, rng: random.Random | None = None) -> str:
    """The right answer to a scoring prompt of the planted model (a random pick with ``rng``)."""
    if '"answers"' in prompt:
        answers = []
        for _, source, rest in _ITEM.findall(prompt):
            candidates = [json.loads(c) for _, c in _CANDIDATE.findall(rest)]
            if rng is not None:
                answers.append(rng.randrange(len(candidates)) + 1)
            else:
                la, h, r = json.loads(source)[2:]
                answers.append(candidates.index(truth(int(la), int(h), int(r))) + 1)
        return f"Sure.\n```json\n{json.dumps({'answers': answers})}\n```"
    operation = re.search(r"^The operation: (.*)$", prompt, re.MULTILINE)[1]
    pattern = re.search(r"^Mapping: (.*)$", prompt, re.MULTILINE)[1].lower()
    named = {"copy": "cop", "capital": "capital"}[operation] in pattern
    return json.dumps({"names_operation": named, "justification": "by the rubric"})


def score(store, judge: FakeJudge, tmp_path: Path, **settings: object):  # noqa: ANN001, ANN201
    cache = ResponseCache(tmp_path / "cache.sqlite")
    try:
        asker = Asker(judge, concurrency=3, cache=cache)
        return asyncio.run(Scorer(store, "tiny", asker, ScoringSettings(**settings)).run())
    finally:
        cache.close()


def test_a_perfect_simulator_scores_one_and_a_rerun_sends_nothing(store, tmp_path: Path) -> None:  # noqa: ANN001
    judge = FakeJudge("perfect")
    summary = score(store, judge, tmp_path, controls=100)
    # The four heads of layer 2 showed every source: nothing unseen to ask, so not simulated.
    assert summary.simulation.holdout == "unseen" and summary.simulation.skipped == {"no_unseen": 4}
    assert summary.simulation.scored == 8 and summary.simulation.failed == 0
    assert summary.simulation.mean == 1.0 and summary.simulation.other_holdout == 0
    assert summary.llm_calls == judge.calls == 8 + 12
    rows = {(r.layer, r.head): r for r in store.description_scores("tiny", scorer=SIMULATION)}
    held_out = rows[(0, 2)].details
    assert held_out["holdout"] == "unseen" and [i["rank"] for i in held_out["items"]] == [3, 4, 5]
    for item in held_out["items"]:
        assert len(item["candidates"]) == 4 and item["candidates"].count(item["truth"]) == 1
        distractors = set(item["candidates"]) - {item["truth"]}
        assert all(t.startswith(" t") and not t.startswith(" t02") for t in distractors)
        assert item["correct"] and item["predicted"] == item["truth"]
    assert held_out["prompt_name"] == "simulate" and len(held_out["prompt_sha"]) == 64
    assert not any(la == 2 for la, _ in rows)  # never simulated on shown sources instead

    # Everything again: the cache answers, nothing is sent, the scores are the same.
    again = FakeJudge("perfect")
    rerun = score(store, again, tmp_path, controls=100)
    assert again.calls == 0 and rerun.llm_calls == 0
    assert rerun.simulation == summary.simulation
    assert len(store.description_scores("tiny")) == len(rows) + 4 + 8 == 20  # replaced, not duplicated
    view = store.get_head("tiny", 0, 2)
    assert {s.scorer for s in view.descriptions[0].scores} == {SIMULATION, OPERATION_AGREEMENT}


def test_a_random_simulator_scores_about_zero(store, tmp_path: Path) -> None:  # noqa: ANN001
    summary = score(store, FakeJudge("random"), tmp_path, n_items=6, n_candidates=4)
    assert summary.simulation.scored == 8
    assert abs(summary.simulation.mean) < 0.2
    for r in store.description_scores("tiny", scorer=SIMULATION):
        accuracy = sum(i["correct"] for i in r.details["items"]) / len(r.details["items"])
        assert r.details["accuracy"] == accuracy and r.details["chance"] == 0.25
        assert r.score == pytest.approx((accuracy - 0.25) / 0.75)


def test_operation_agreement_precision_and_recall(store, tmp_path: Path) -> None:  # noqa: ANN001
    summary = score(store, FakeJudge("perfect"), tmp_path, controls=100)
    agreement = summary.operation_agreement
    # The salient prompt shows no operation: every score is in the group to quote.
    assert agreement.group == "prompt did not show operations" and agreement.by_prompt == {"salient": 12}
    shown = summary.operation_agreement_shown
    assert shown.positives == shown.controls == 0 and shown.precision is None
    # Positives: 0.0, 0.1 named (TP), 1.0 "Unclear" (FN), 2.3 capital named (TP). Controls: every
    # other head; only 1.1 names an operation it scores 0 on (FP).
    assert (agreement.positives, agreement.controls) == (4, 8)
    assert (agreement.true_positives, agreement.false_negatives) == (3, 1)
    assert (agreement.false_positives, agreement.true_negatives) == (1, 7)
    assert agreement.precision == 0.75 and agreement.recall == 0.75
    rows = {(r.layer, r.head): r for r in store.description_scores("tiny", scorer=OPERATION_AGREEMENT)}
    assert rows[(2, 3)].details["operation"] == "capital" and rows[(2, 3)].details["relation"] == 0.5
    assert rows[(1, 0)].score == 0.0 and rows[(1, 1)].score == 0.0 and rows[(0, 0)].score == 1.0
    assert rows[(1, 1)].details["role"] == "control" and rows[(1, 1)].details["names_operation"] is True
    assert rows[(2, 3)].details["description_prompt"] == "salient"
    assert rows[(2, 3)].details["prompt_showed_operations"] is False
    assert rows[(2, 3)].details["operations_in_prompt"] == []
    # One control per positive by default, each a head that scores low on the operation asked.
    default = score(store, FakeJudge("perfect"), tmp_path / "other")
    assert default.operation_agreement.positives == 4


def test_unusable_answers_are_stored_as_failed_with_the_raw_text(store, tmp_path: Path) -> None:  # noqa: ANN001
    judge = FakeJudge("garbage")
    summary = score(store, judge, tmp_path)
    assert summary.simulation.scored == 0 and summary.simulation.failed == 8
    assert summary.simulation.mean is None and summary.operation_agreement.failed == 8
    assert summary.operation_agreement.precision is None
    assert judge.calls == 2 * (8 + 8)  # one repair request each, then no more
    row = store.description_scores("tiny", scorer=SIMULATION)[0]
    assert row.score is None and "no JSON object" in row.details["error"]
    assert "after one repair request" in row.details["error"]
    assert row.details["raw"].count("I think the second one") == 2 and "--- repair ---" in row.details["raw"]

    fixed = FakeJudge("repairable")
    summary = score(store, fixed, tmp_path / "fresh")
    assert summary.simulation.mean == 1.0 and fixed.calls == 2 * (8 + 8)
    assert store.description_scores("tiny", scorer=SIMULATION)[0].score == 1.0  # replaced


def test_out_of_range_answers_get_a_repair_request(store, tmp_path: Path) -> None:  # noqa: ANN001
    class OutOfRange(FakeJudge):
        async def complete(self, messages: Messages, params: GenerationParams) -> Completion:
            if len(messages) == 1 and '"answers"' in messages[0]["content"]:
                self.calls += 1
                return Completion('{"answers": [9, 9, 9]}')
            return await super().complete(messages, params)

    judge = OutOfRange("perfect")
    summary = score(store, judge, tmp_path, n_items=3)
    assert summary.simulation.mean == 1.0
    raw = store.description_scores("tiny", scorer=SIMULATION)[0].details["raw"]
    assert raw.startswith('{"answers": [9, 9, 9]}') and "--- repair ---" in raw


def test_limit_and_a_model_without_descriptions(store, tmp_path: Path) -> None:  # noqa: ANN001
    from describer.errors import HeadmapsError

    cache = ResponseCache(tmp_path / "c.sqlite")
    asker = Asker(FakeJudge("perfect"), cache=cache)
    asyncio.run(Scorer(store, "tiny", asker, limit=2).run())
    assert [(r.layer, r.head) for r in store.description_scores("tiny", scorer=SIMULATION)] == [
        (0, 0),
        (0, 1),
    ]
    store.register_model(model_info("empty", 1, 1))
    with pytest.raises(HeadmapsError, match="no descriptions to score"):
        asyncio.run(Scorer(store, "empty", asker).run())
    cache.close()
    assert summarize(store, "tiny", "judge").simulation.scored == 2
    runs = store.list_runs(kind="evaluate", model="tiny")
    assert runs[-1].status == "done" and runs[-1].settings["experiment"] == "description_scores"


def test_shown_sources_reads_the_rendered_prompt() -> None:
    text = prompts.render(
        "salient",
        salient=[{"token": ' a"b', "mappings": [{"token": " x"}]}, {"token": " x", "mappings": []}],
        categories=CATEGORY_MEANINGS,
    ).text
    # " x" is a source row as well as a mapping; " y" appears nowhere. Without "->" rows (a user
    # template), any mention counts as shown.
    assert shown_sources(text, [' a"b', " x", " y"]) == {' a"b', " x"}
    assert shown_sources('"q" appears without arrows', ["q", "z"]) == {"q"}
