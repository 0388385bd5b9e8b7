"""Simulation scores cannot flatter themselves: analysis stores 20 salient sources and every
describe prompt shows the first 15; the simulation scorer asks only about the 5 the prompt
did not show, unless ``--holdout shown`` asks (and then every score and the summary say so); a
description whose prompt showed every stored source is skipped with the reason counted, never
simulated on shown sources instead."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

import prompts
from describer.evidence import head_evidence
from describer.llm import Completion, GenerationParams, LLMBackend, Messages, ResponseCache
from describer.maps.settings import SHOWN_SOURCES, STORED_SOURCES, AnalysisSettings
from evaluation.scoring import SIMULATION, Asker, Scorer, ScoringSettings, shown_sources, summarize
from store import open_store
from store.records import (
    AnalysisIn,
    HeadSalientIn,
    HeadView,
    MappingIn,
    MappingOut,
    RelationOut,
    SalientIn,
    SalientOut,
)
from tests import _fake_llm
from tests._cli import assert_ok, assert_user_error, invoke
from tests._fake_llm import FakeOpenAIServer
from tests._storedb import description, model_info

N_LAYERS, N_HEADS = 2, 2
DESCRIBE_TEMPLATES = ("facts", "salient", "salient_evidence")
"""Every built-in template that describes a head (the other two score descriptions)."""


def source(layer: int, head: int, rank: int) -> str:
    return f" s{layer}{head}r{rank:02d}"


def truth(layer: int, head: int, rank: int) -> str:
    return f" t{layer}{head}r{rank:02d}"


TRUTH = {
    source(la, h, r): truth(la, h, r) for la in range(N_LAYERS) for h in range(N_HEADS) for r in range(30)
}


def analysis(n_salient: int) -> AnalysisIn:
    return AnalysisIn(
        model="tiny",
        settings={"top_tokens": n_salient},
        heads=[
            HeadSalientIn(
                layer=la,
                head=h,
                salient=[
                    SalientIn(
                        token=source(la, h, r),
                        token_id=r,
                        amplification=30.0 - r,
                        mappings=[
                            MappingIn(token=truth(la, h, r), token_id=1, logit=2.0),
                            MappingIn(token=f" u{la}{h}r{r:02d}", token_id=2, logit=1.0),
                        ],
                    )
                    for r in range(n_salient)
                ],
            )
            for la in range(N_LAYERS)
            for h in range(N_HEADS)
        ],
        operations={},
    )


def fill(s, n_salient: int = STORED_SOURCES, template: str = "facts") -> None:  # noqa: ANN001
    """The model analysed with ``n_salient`` sources per head, each head described from
    ``template`` rendered exactly as ``describe`` renders it."""
    s.save_analysis(model_info(n_layers=N_LAYERS, n_heads=N_HEADS), analysis(n_salient), settings_key="k")
    for la in range(N_LAYERS):
        for h in range(N_HEADS):
            rendered = prompts.render(template, **head_evidence(s.get_head("tiny", la, h), N_LAYERS, N_HEADS))
            s.add_description(
                description(
                    layer=la,
                    head=h,
                    prompt_name=rendered.name,
                    prompt_sha=rendered.sha256,
                    rendered_prompt=rendered.text,
                    pattern="Maps each token to its t-form.",
                    inputs="Short tokens.",
                )
            )


_ITEM = re.compile(r'^(\d+)\. ("(?:[^"\\]|\\.)*"): (.*)$', re.MULTILINE)
_CANDIDATE = re.compile(r'\((\d+)\) ("(?:[^"\\]|\\.)*")')


def perfect_answer(prompt: str) -> str:
    """The right answer to a simulation prompt; operation agreement is never asked here (the
    model has no operations)."""
    answers = []
    for _, src, rest in _ITEM.findall(prompt):
        candidates = [json.loads(c) for _, c in _CANDIDATE.findall(rest)]
        answers.append(candidates.index(TRUTH[json.loads(src)]) + 1)
    return json.dumps({"answers": answers})


class Judge(LLMBackend):
    model = "judge"
    host = "fake"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def complete(self, messages: Messages, params: GenerationParams) -> Completion:
        self.prompts.append(messages[0]["content"])
        return Completion(perfect_answer(messages[0]["content"]), 50, 10)


def score(store, tmp_path: Path, **settings: object):  # noqa: ANN001, ANN201
    judge = Judge()
    cache = ResponseCache(tmp_path / "cache.sqlite")
    try:
        summary = asyncio.run(
            Scorer(store, "tiny", Asker(judge, cache=cache), ScoringSettings(**settings)).run()
        )
    finally:
        cache.close()
    return summary, judge


@pytest.fixture()
def store(tmp_path: Path):  # noqa: ANN201
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        yield s


# --- the prompt shows 15 of the 20 stored sources ----------------------------------------------------


def test_analysis_stores_more_sources_than_the_prompt_shows() -> None:
    assert SHOWN_SOURCES == 15  # the paper's N
    assert AnalysisSettings().top_tokens == STORED_SOURCES == 20


def copy_view(n: int) -> HeadView:
    words = [f" w{i:02d}" for i in range(n)]
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
                amplification=9.0 - i / 10,
                mappings=[MappingOut(token=w, token_id=i, logit=5.0)],
            )
            for i, w in enumerate(words)
        ],
        operations=[],
        # As analysis stores them: measured on every stored row.
        relations=[
            RelationOut(relation="copy", label="maps to itself", rows=n, n_rows=n, fraction=1.0, examples=[])
        ],
        patterns={},
        descriptions=[],
    )


@pytest.mark.parametrize("template", DESCRIBE_TEMPLATES)
def test_every_template_shows_only_the_first_15_of_20_stored_sources(template: str) -> None:
    view = copy_view(STORED_SOURCES)
    data = head_evidence(view, 4, 2)
    assert [s["token"] for s in data["salient"]] == [s.token for s in view.salient[:SHOWN_SOURCES]]
    text = prompts.render(template, **data).text
    tokens = [s.token for s in view.salient]
    assert shown_sources(text, tokens) == set(tokens[:SHOWN_SOURCES])
    for held_out in tokens[SHOWN_SOURCES:]:
        assert json.dumps(held_out) not in text  # not as a row, not as an output either
    if template == "facts":
        # The relation stored for 20 rows is measured again on the 15 shown: no fact counts a
        # row the prompt hides.
        assert "15 of 15 rows" in text and "of 20 rows" not in text


def test_relations_stored_for_the_shown_rows_are_kept() -> None:
    view = copy_view(SHOWN_SOURCES)
    data = head_evidence(view, 4, 2)
    assert [r["text"] for r in data["relations"]] == ["15 of 15 rows (all rows): maps to itself"]


# --- simulation holds out unseen sources -------------------------------------------------------------


def test_simulation_asks_only_about_the_sources_the_prompt_did_not_show(store, tmp_path: Path) -> None:  # noqa: ANN001
    fill(store)
    summary, judge = score(store, tmp_path)
    sim = summary.simulation
    assert (sim.holdout, sim.scored, sim.failed, sim.mean, sim.skipped) == ("unseen", 4, 0, 1.0, {})
    for row in store.description_scores("tiny", scorer=SIMULATION):
        assert row.details["holdout"] == "unseen"
        assert [i["rank"] for i in row.details["items"]] == list(range(SHOWN_SOURCES, STORED_SOURCES))
    for prompt in judge.prompts:
        asked = [json.loads(s) for _, s, _ in _ITEM.findall(prompt)]
        assert len(asked) == 5 and all(int(t[-2:]) >= SHOWN_SOURCES for t in asked)


def test_holdout_shown_is_labelled_on_every_score_and_the_summary(store, tmp_path: Path) -> None:  # noqa: ANN001
    fill(store)
    score(store, tmp_path)
    summary, _ = score(store, tmp_path, holdout="shown", n_items=3)
    sim = summary.simulation
    assert (sim.holdout, sim.scored, sim.other_holdout, sim.skipped) == ("shown", 4, 0, {})
    for row in store.description_scores("tiny", scorer=SIMULATION):
        # The least prominent of the shown rows, never an unseen one.
        assert row.details["holdout"] == "shown" and [i["rank"] for i in row.details["items"]] == [12, 13, 14]
    # The unseen summary leaves the shown scores out rather than mixing them in.
    unseen = summarize(store, "tiny", "judge").simulation
    assert (unseen.holdout, unseen.scored, unseen.mean, unseen.other_holdout) == ("unseen", 0, None, 4)


def test_a_prompt_that_showed_every_source_is_skipped_with_the_reason_counted(store, tmp_path: Path) -> None:  # noqa: ANN001
    fill(store, n_salient=SHOWN_SOURCES)  # an analysis stored before 20 sources: all 15 shown
    summary, judge = score(store, tmp_path)
    sim = summary.simulation
    assert (sim.scored, sim.failed, sim.mean, sim.skipped) == (0, 0, None, {"no_unseen": 4})
    assert judge.prompts == [] and store.description_scores("tiny", scorer=SIMULATION) == []
    assert summarize(store, "tiny", "judge").simulation.skipped == {"no_unseen": 4}
    shown, _ = score(store, tmp_path, holdout="shown")
    assert (shown.simulation.holdout, shown.simulation.scored, shown.simulation.skipped) == ("shown", 4, {})


# --- the command line ----------------------------------------------------------------------------


def test_cli_holdout_option_labels_the_groups_and_counts_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADMAPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_fake_llm, "answer_for", perfect_answer)
    db = f"sqlite:///{tmp_path / 'scores.db'}"
    with open_store(db) as s:
        fill(s, n_salient=SHOWN_SOURCES)  # every prompt showed every stored source
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
        table = invoke(*args, "--db", db)
        assert_ok(table)
        assert "note: 4 description(s) not simulated (no_unseen)" in table.stdout
        assert "simulation on sources the prompt did not show: 0 scored" in table.stdout
        assert server.calls == 0
        shown = invoke(*args, "--db", db, "--holdout", "shown", "--json")
        assert_ok(shown)
        summary = json.loads(shown.stdout)
        assert summary["simulation"]["holdout"] == "shown" and summary["simulation"]["scored"] == 4
        again = invoke(*args, "--db", db, "--holdout", "shown")
        assert_ok(again)
        assert "simulation on sources the prompt showed" in again.stdout
        unseen = invoke(*args, "--db", db, "--json")
        assert_ok(unseen)
        sim = json.loads(unseen.stdout)["simulation"]
        assert (sim["holdout"], sim["scored"], sim["other_holdout"]) == ("unseen", 0, 4)
        assert_user_error(invoke(*args, "--db", db, "--holdout", "both"), "unknown --holdout 'both'")
