"""``headmaps search``, ``headmaps rate`` (driven with input) and ``headmaps serve``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from describer.cli import app
from evaluation.web.review_queue import review_order
from store import open_store
from tests._webstore import fill

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> tuple[str, dict[str, int]]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with open_store(url) as store:
        return url, fill(store)


def test_search_json(db: tuple[str, dict[str, int]]) -> None:
    url, ids = db
    result = runner.invoke(app, ["search", "past tense", "--mode", "fulltext", "--json", "--db", url])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["mode"] == "fulltext"
    assert [(h["description_id"], h["model"], h["layer"], h["head"]) for h in body["results"]] == [
        (ids["tense"], "tiny", 2, 3)
    ]
    assert set(body["results"][0]) == {"description_id", "model", "layer", "head", "text", "score"}
    filtered = runner.invoke(
        app, ["search", "capital", "--mode", "fulltext", "--json", "--min-score", "capital=1.5", "--db", url]
    )
    assert json.loads(filtered.stdout)["results"] == []
    table = runner.invoke(app, ["search", "capital", "--mode", "fulltext", "--model", "tiny", "--db", url])
    assert table.exit_code == 0 and "tiny L1.H2" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-score", "capital"], "--min-score takes OPERATION=NUMBER"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--category", "misc"], "unknown category 'misc'"),
        (["--layers", "a-b"], "--layers takes FIRST-LAST"),
    ],
)
def test_search_errors(db: tuple[str, dict[str, int]], args: list[str], message: str) -> None:
    result = runner.invoke(app, ["search", "capital", "--mode", "fulltext", *args, "--db", db[0]])
    assert result.exit_code == 2 and message in result.stderr


def test_rate_in_the_terminal(db: tuple[str, dict[str, int]]) -> None:
    url, ids = db
    # Rate the first with a comment, skip the second, a wrong key then "not plausible", then quit.
    keys = "c\nclose enough\n2\ns\nx\n3\nq\n"
    result = runner.invoke(app, ["rate", "tiny", "--rater", "ann", "--db", url], input=keys)
    assert result.exit_code == 0, result.output
    assert "0 of 4 rated" in result.stdout
    assert "unknown key 'x'" in result.stdout and "Stopped: 2 rated this session." in result.stdout
    with open_store(url) as store:
        order = review_order(store, "ann")  # ann's own seeded order, the same as the web's
        first = store.get_description(order[0])
        assert first.pattern in result.stdout
        assert [(r.label, r.comment) for r in store.ratings_for(order[0])] == [
            ("partially_plausible", "close enough")
        ]
        assert store.ratings_for(order[1]) == []  # skipped
        assert [r.label for r in store.ratings_for(order[2])] == ["not_plausible"]
        assert sorted(order) == sorted(ids.values())
    # Next time the queue starts with what is left (the skip is remembered), and says so.
    again = runner.invoke(app, ["rate", "--rater", "ann", "--db", url], input="4\n")
    assert (
        "2 of 4 rated" in again.stdout
        and "(3 of 4 rated, 1 skipped: `headmaps rate --skipped`" in again.stdout
    )
    with open_store(url) as store:
        assert store.skipped_by("ann") == {order[1]}
    skipped = runner.invoke(app, ["rate", "--rater", "ann", "--skipped", "--db", url], input="1\n")
    assert "Nothing more to rate (4 of 4 rated)." in skipped.stdout
    with open_store(url) as store:
        assert [r.label for r in store.ratings_for(order[1])] == ["plausible"]
    unknown = runner.invoke(app, ["rate", "nope", "--rater", "ann", "--db", url])
    assert unknown.exit_code == 2 and "unknown model 'nope'" in unknown.stderr


def test_serve_binds_loopback_and_answers(db: tuple[str, dict[str, int]]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HEADMAPS_DATABASE_URL": db[0]}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from describer.cli import app; app()", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.2)
        assert [m["name"] for m in response.json()] == ["tiny"]
    finally:
        proc.terminate()
        proc.wait(20)
