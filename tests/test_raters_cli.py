"""``headmaps raters add|list|revoke|link``, and what raters change for ``serve`` and ``rate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from describer.cli import app
from store import open_store
from store import tables as S
from tests._webstore import fill

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'raters.db'}"
    with open_store(url) as store:
        fill(store)
    return url


def run(*args: str):  # noqa: ANN201
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


def one_error(result, fragment: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2 and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.stderr


def test_add_prints_the_token_last_and_stores_only_its_hash(db: str) -> None:
    result = run("raters", "add", "ann", "--url", "http://lab.example:8000/", "--db", db)
    assert result.exit_code == 0, result.output
    token = result.stdout.splitlines()[-1]
    assert token.startswith("hm_") and len(token) > 40
    assert "http://lab.example:8000/login?code=" in result.stderr
    code = result.stderr.split("login?code=")[1].split()[0]
    with open_store(db) as store:
        assert store.rater_by_token(token).name == "ann"
        with store.read() as session:
            row = session.scalar(select(S.Rater))
            stored = " ".join(str(v) for v in (row.name, row.token_hash, row.login_hash))
        assert token not in stored and code not in stored and len(row.token_hash) == 64
        assert store.redeem_login_code(code).name == "ann"
        assert store.redeem_login_code(code) is None  # once
    second = run("raters", "add", "bob", "--db", db)
    assert second.stdout.splitlines()[-1] != token


def test_duplicate_and_bad_names_are_one_error_line(db: str) -> None:
    assert run("raters", "add", "ann", "--db", db).exit_code == 0
    one_error(run("raters", "add", "ann", "--db", db), "a rater named 'ann' exists already")
    one_error(run("raters", "add", " ann ", "--db", db), "exists already")
    one_error(run("raters", "add", "  ", "--db", db), "must not be empty")
    one_error(run("raters", "add", "x" * 201, "--db", db), "at most 200 characters")
    one_error(run("raters", "revoke", "zed", "--db", db), "unknown rater 'zed'; raters: ann")
    one_error(run("raters", "link", "zed", "--db", db), "unknown rater 'zed'")


def test_list_revoke_and_link(db: str) -> None:
    empty = run("raters", "list", "--db", db)
    assert empty.exit_code == 0 and "no raters" in empty.stdout
    ann = run("raters", "add", "ann", "--db", db).stdout.splitlines()[-1]
    run("raters", "add", "bob", "--db", db)
    link = run("raters", "link", "ann", "--db", db)
    assert link.exit_code == 0 and link.stdout.strip().startswith("http://127.0.0.1:8000/login?code=")
    revoked = run("raters", "revoke", "ann", "--db", db)
    assert revoked.exit_code == 0 and "ann revoked" in revoked.stdout
    listed = json.loads(run("raters", "list", "--json", "--db", db).stdout)
    assert [(r["name"], r["revoked_at"] is None) for r in listed] == [("ann", False), ("bob", True)]
    with open_store(db) as store:
        assert store.rater_by_token(ann) is None
        assert store.has_raters()
    one_error(run("raters", "link", "ann", "--db", db), "rater 'ann' is revoked")
    one_error(run("raters", "add", "ann", "--db", db), "exists already")  # names are never reused
    table = run("raters", "list", "--db", db).stdout
    assert "revoked" in table and "active" in table


def test_serve_beyond_loopback_needs_raters(db: str) -> None:
    one_error(run("serve", "--host", "0.0.0.0", "--db", db), "serving beyond loopback (0.0.0.0) needs raters")


def test_terminal_rating_needs_an_active_rater_once_raters_exist(db: str) -> None:
    run("raters", "add", "ann", "--db", db)
    refused = runner.invoke(app, ["rate", "--rater", "mallory", "--db", db], input="1\nq\n")
    one_error(refused, "'mallory' is not an active rater")
    ok = runner.invoke(app, ["rate", "--rater", "ann", "--db", db], input="1\nq\n")
    assert ok.exit_code == 0, ok.output
    run("raters", "revoke", "ann", "--db", db)
    one_error(runner.invoke(app, ["rate", "--rater", "ann", "--db", db], input="q\n"), "not an active rater")
