"""The describer's evidence tells the LLM a head's notable attention patterns next to its
mappings (the default and evidence prompts), and only the notable ones; the paper's
mappings-only prompt stays without them."""

from __future__ import annotations

import pytest

import prompts
from describer.evidence import head_evidence
from describer.maps.patterns import PATTERNS
from store.records import HeadView, MappingOut, SalientOut

COPY_ROWS = [" river", " Paul", " cold", " seven"]


def view(patterns: dict[str, float]) -> HeadView:
    salient = [
        SalientOut(
            rank=i,
            token=word,
            token_id=i,
            amplification=3.0 - i * 0.1,
            mappings=[
                MappingOut(token=word, token_id=i, logit=5.0),
                MappingOut(token=" the", token_id=99, logit=1.0),
            ],
        )
        for i, word in enumerate(COPY_ROWS)
    ]
    return HeadView(
        model="tiny",
        layer=5,
        head=1,
        analysis_id=1,
        settings_key="k",
        settings={},
        salient=salient,
        operations=[],
        patterns=patterns,
        descriptions=[],
    )


MEASURED = {
    "induction": 0.87,
    "previous_token": 0.12,
    "duplicate_token": 0.02,
    "first_token": 0.3,
    "entropy": 2.1,
}


def test_only_notable_patterns_reach_the_evidence_strongest_first() -> None:
    data = head_evidence(view({**MEASURED, "previous_token": 0.55}), 18, 4)
    assert [a["name"] for a in data["attention"]] == ["induction", "previous_token"]
    assert data["attention"][0]["label"] == PATTERNS["induction"].label
    assert data["patterns"]["entropy"] == pytest.approx(2.1)  # every score stays available to templates
    assert head_evidence(view(MEASURED), 18, 4)["attention"][0]["score"] == pytest.approx(0.87)


def test_the_default_prompt_says_where_the_head_looks() -> None:
    rendered = prompts.render("facts", **head_evidence(view(MEASURED), 18, 4))
    assert rendered.user is not None
    assert "Where it looks:\n- an induction head (induction 0.87, 87% of its attention)" in rendered.user
    assert "previous-token" not in rendered.user and "sink" not in rendered.user
    assert "maps to itself" in rendered.user  # the mapping facts are still there


def test_without_notable_patterns_the_prompt_has_no_attention_section() -> None:
    for patterns in ({}, {"induction": 0.1, "first_token": 0.5}):
        rendered = prompts.render("facts", **head_evidence(view(patterns), 18, 4))
        assert "Where it looks" not in (rendered.user or "")


def test_the_evidence_prompt_states_the_pattern_with_its_definition() -> None:
    text = prompts.render("salient_evidence", **head_evidence(view(MEASURED), 18, 4)).text
    assert "an induction head (induction 0.87, 87% of its attention; on a random sequence repeated" in text


def test_the_papers_prompt_stays_mappings_only() -> None:
    text = prompts.render("salient", **head_evidence(view(MEASURED), 18, 4)).text
    assert "induction" not in text and "attention" not in text.lower().split("attention head")[-1]
