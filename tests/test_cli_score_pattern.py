"""``headmaps score --pattern NAME`` and the pattern part of ``headmaps analyze``, on the tiny
Llama: the layer × head table as JSON, stored once and never measured again, and one
``error:`` line for an unknown pattern."""

from __future__ import annotations

import json
from pathlib import Path

from describer.maps.patterns import PATTERNS, PatternSettings
from store import open_store
from tests._cli import (  # noqa: F401  (fixtures are used by name)
    N_HEADS,
    N_LAYERS,
    assert_ok,
    assert_user_error,
    cache_dir,
    invoke,
    score_json,
    tiny_dir,
    tokenizer,
)


def test_score_pattern_json(tiny_dir: Path) -> None:
    payload = score_json(tiny_dir, "--pattern", "induction", "--top", "3")
    assert set(payload) == {"model", "pattern", "unit", "settings", "scores", "top_heads"}
    assert payload["model"] == "tiny-llama" and payload["pattern"] == "induction"
    assert payload["unit"] == "fraction" and payload["settings"]["attention"] == "eager"
    grid = payload["scores"]
    assert len(grid) == N_LAYERS and all(len(row) == N_HEADS for row in grid)
    assert all(0.0 <= v <= 1.0 for row in grid for v in row)
    flat = sorted((v for row in grid for v in row), reverse=True)
    assert [t["score"] for t in payload["top_heads"]] == flat[:3]
    for t in payload["top_heads"]:
        assert grid[t["layer"]][t["head"]] == t["score"]
    again = score_json(tiny_dir, "--pattern", "induction", "--top", "3")
    assert again["scores"] == grid  # seeded inputs: the same numbers every run


def test_score_pattern_table(tiny_dir: Path) -> None:
    result = invoke("score", tiny_dir, "--pattern", "entropy", "--device", "cpu")
    assert_ok(result)
    assert "entropy" in result.stdout and "nats" in result.stdout and "Top heads:" in result.stdout


def test_unknown_pattern_is_one_error_line_listing_the_valid_ones(tiny_dir: Path) -> None:
    result = invoke("score", tiny_dir, "--pattern", "inductoin", "--json")
    assert_user_error(result, "unknown pattern 'inductoin'", *PATTERNS)


def test_pattern_and_operation_together_is_refused(tiny_dir: Path) -> None:
    result = invoke("score", tiny_dir, "--pattern", "induction", "--operation", "general_copying")
    assert_user_error(result, "exactly one of")


def test_analyze_stores_the_patterns_once(tiny_dir: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    db = f"sqlite:///{tmp_path / 'p.db'}"
    args = ("analyze", tiny_dir, "--operations", "general_copying", "--device", "cpu", "--db", db)
    assert_ok(invoke(*args, "--no-patterns"))
    with open_store(db) as store:
        assert not store.has_patterns("tiny-llama", PatternSettings().key())
    # Only the patterns are missing: they are measured, and no operation is scored again.
    monkeypatch.setattr(
        "describer.maps.analyzer.Analyzer.analyze",
        lambda *a, **k: (_ for _ in ()).throw(AssertionError("MAPS re-run")),
    )
    result = invoke(*args)
    assert_ok(result)
    assert "top heads per attention pattern" in result.stdout
    with open_store(db) as store:
        grid = store.pattern_grid("tiny-llama", "previous_token")
        assert len(grid) == N_LAYERS and all(0.0 <= v <= 1.0 for row in grid for v in row)
        assert store.get_head("tiny-llama", 1, 2).patterns["previous_token"] == grid[1][2]
    result = invoke(*args)
    assert_ok(result)
    assert "nothing to do" in result.stdout
    stored = json.loads(invoke("show", "tiny-llama", "1.2", "--json", "--db", db).stdout)
    assert stored["patterns"]["induction"] >= 0.0
