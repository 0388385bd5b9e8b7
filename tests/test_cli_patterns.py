"""Attention-pattern scores on the command line: ``headmaps show`` prints a head's scores with
their units and marks the notable ones, ``headmaps search --min-score PATTERN=NUMBER`` filters by
them (with operations, and several at once), and a malformed value is one ``error:`` line and
exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store import open_store
from tests._cli import assert_ok, assert_user_error, invoke
from tests._patternstore import add_patterns
from tests._webstore import fill


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with open_store(url) as store:
        fill(store)
        add_patterns(store)
    return url


def pattern_lines(out: str) -> dict[str, str]:
    """The rows of ``show``'s pattern table, by pattern name."""
    table = out[out.index("Attention patterns") : out.index("└", out.index("Attention patterns"))]
    rows = {}
    for line in table.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.split("│")[1:-1]]
            rows[cells[0]] = " | ".join(cells[1:])
    return rows


def test_show_prints_the_patterns_and_marks_the_notable(db: str) -> None:
    result = invoke("show", "tiny", "1.2", "--db", db)
    assert_ok(result)
    rows = pattern_lines(result.stdout)
    assert list(rows) == ["previous_token", "induction", "first_token", "entropy"]  # PATTERNS order
    assert rows["induction"] == "0.830 | fraction | * an induction head"
    assert rows["previous_token"] == "0.050 | fraction | "  # below 0.4: not marked
    assert rows["first_token"] == "0.500 | fraction | "  # a sink needs 0.9
    assert rows["entropy"] == "2.200 | nats | "  # never notable on its own
    sink = pattern_lines(invoke("show", "tiny", "2.0", "--db", db).stdout)
    assert sink["first_token"] == "0.950 | fraction | * an attention-sink head"
    view = json.loads(invoke("show", "tiny", "1.2", "--json", "--db", db).stdout)
    assert view["patterns"] == {"entropy": 2.2, "first_token": 0.5, "induction": 0.83, "previous_token": 0.05}


def test_show_without_patterns_prints_no_pattern_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bare.db'}"
    with open_store(url) as store:
        fill(store)
    result = invoke("show", "tiny", "1.2", "--db", url)
    assert_ok(result)
    assert "Attention patterns" not in result.stdout


def heads(db: str, query: str, *scores: str) -> list[tuple[int, int]]:
    args = [a for s in scores for a in ("--min-score", s)]
    result = invoke("search", query, "--mode", "fulltext", "--json", *args, "--db", db)
    assert_ok(result)
    return [(h["layer"], h["head"]) for h in json.loads(result.stdout)["results"]]


def test_search_filters_by_pattern_score(db: str) -> None:
    assert heads(db, "capital") == [(1, 2)]
    assert heads(db, "capital", "induction=0.8") == [(1, 2)]
    assert heads(db, "capital", "induction=0.9") == []
    assert heads(db, "copies", "induction=0.4") == [(0, 1)]
    assert heads(db, "copies", "induction=0.4", "previous_token=0.95") == []  # both must hold
    assert heads(db, "copies", "induction=0.4", "previous_token=0.9") == [(0, 1)]
    assert heads(db, "verbs", "previous_token=0.5") == [(2, 3)]
    assert heads(db, "verbs", "induction=0.5") == []  # the older analysis' 0.99 is not read
    assert heads(db, "verbs", "entropy=3.3") == [(2, 3)]


def test_pattern_and_operation_minimums_combine(db: str) -> None:
    with open_store(db) as store:
        capital = store.operation_grid("tiny", "capital")[1][2]
    assert heads(db, "capital", f"capital={capital}", "induction=0.8") == [(1, 2)]
    assert heads(db, "capital", f"capital={capital + 0.01}", "induction=0.8") == []
    assert heads(db, "capital", f"capital={capital}", "induction=0.9") == []
    # A name that is not a pattern is an operation; one no analysis scored is a typo, said so.
    unknown = invoke("search", "capital", "--min-score", "no_such_operation=0", "--db", db)
    assert_user_error(unknown, "unknown operation 'no_such_operation': no analysis in this store scored it")


@pytest.mark.parametrize(
    "value", ["induction", "induction=", "=0.5", "induction=high", "induction=nan", "induction=inf"]
)
def test_malformed_min_scores_are_one_error_line(db: str, value: str) -> None:
    result = invoke("search", "capital", "--min-score", value, "--db", db)
    assert_user_error(result, "--min-score takes OPERATION=NUMBER or PATTERN=NUMBER", repr(value))
