"""Relation evidence on the command line: ``headmaps show`` prints a head's relations, and
``headmaps search --relation KEY [--min-fraction F]`` lists the heads that have one (or filters a
description search by it), with one ``error:`` line and exit 2 for a bad key or fraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store import open_store
from tests._cli import assert_ok, assert_user_error, invoke
from tests._webstore import fill


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with open_store(url) as store:
        fill(store)
    return url


def test_show_prints_the_relations(db: str) -> None:
    result = invoke("show", "tiny", "1.2", "--db", db)
    assert_ok(result)
    out = result.stdout
    assert "Relations" in out
    # Tokens as describer.tokens.visible writes them: a leading space is ␣, ▁ stays itself.
    assert "2 of 3 rows: country → capital   e.g. ␣France → ␣Paris, ▁Japan → ▁Tokyo" in out
    assert out.index("country → capital") < out.index("3 of 3 rows: inputs are mostly Latin-script words")
    view = json.loads(invoke("show", "tiny", "1.2", "--json", "--db", db).stdout)
    assert view["relations"][0]["summary"] == "2 of 3 rows: country → capital"
    assert "Relations" not in invoke("show", "tiny", "0.0", "--db", db).stdout


def test_search_by_relation_lists_heads_strongest_first(db: str) -> None:
    result = invoke("search", "--relation", "copy", "--db", db)
    assert_ok(result)
    out = result.stdout
    assert "2 heads with copy" in out
    assert out.index("tiny 0.1") < out.index("tiny 2.0")
    assert "3 of 3 rows: maps to itself" in out and "' w010' → ' w010'" in out
    body = json.loads(
        invoke("search", "--relation", "copy", "--min-fraction", "0.5", "--json", "--db", db).stdout
    )
    assert [(h["model"], h["layer"], h["head"], h["summary"]) for h in body["results"]] == [
        ("tiny", 0, 1, "3 of 3 rows: maps to itself (or a case/space variant)")
    ]
    assert (body["relation"], body["min_fraction"]) == ("copy", 0.5)
    prefix = json.loads(invoke("search", "--relation", "operation:", "--json", "--db", db).stdout)
    assert [h["relation"] for h in prefix["results"]] == ["operation:capital"]
    none = invoke("search", "--relation", "successor", "--db", db)
    assert_ok(none)
    assert "No head has relation 'successor' in at least 0 of its rows." in none.stdout


def test_search_query_filtered_by_relation(db: str) -> None:
    found = invoke("search", "copies", "--mode", "fulltext", "--relation", "copy", "--json", "--db", db)
    assert [(h["layer"], h["head"]) for h in json.loads(found.stdout)["results"]] == [(0, 1)]
    filtered = invoke(
        "search", "copies", "--mode", "fulltext", "--relation", "operation:", "--json", "--db", db
    )
    assert json.loads(filtered.stdout)["results"] == []


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--relation", "nonsense"], ("unknown relation 'nonsense'", "operation:NAME")),
        (["--relation", "operation:nope"], ("unknown relation 'operation:nope'",)),
        (["--relation", "copy", "--min-fraction", "1.5"], ("between 0 and 1, not 1.5",)),
        (["--relation", "copy", "--min-fraction", "-0.1"], ("between 0 and 1, not -0.1",)),
        (["capital", "--relation", "copy", "--min-fraction", "2"], ("between 0 and 1, not 2",)),
        (["capital", "--mode", "fulltext", "--relation", "bogus"], ("unknown relation 'bogus'",)),
        (["--min-fraction", "0.5", "--relation"], ()),
        (["capital", "--min-fraction", "0.5"], ("--min-fraction needs --relation KEY",)),
        ([], ("give a QUERY, or filters (--relation, --min-score, --source/--target",)),
        (["--relation", "copy", "--model", "nope"], ("unknown model 'nope'",)),
    ],
)
def test_search_relation_errors(db: str, args: list[str], fragments: tuple[str, ...]) -> None:
    result = invoke("search", *args, "--db", db)
    if not fragments:  # a usage error of the option parser itself
        assert result.exit_code == 2
        return
    assert_user_error(result, *fragments)
