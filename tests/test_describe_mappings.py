"""``headmaps describe --mappings FILE``: tables from a file described with the same prompts, LLM
options and cache as the main job, as a real process against a fake OpenAI-compatible server;
bad files are one error line, exit 2, and nothing sent to the LLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._fake_llm import FakeOpenAIServer
from tests.test_describe_integration import describe


def write(path: Path, payload: object) -> Path:
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


TABLES = {
    "heads": [
        {
            "name": "plural-ish",
            "salient": [
                {"token": " cat", "mappings": [" cats", " dog"]},
                {"token": " house", "mappings": [" houses", " home"]},
                {"token": " car", "mappings": [" cars", "('"]},
            ],
        },
        {
            "name": "copy-ish",
            "salient": [
                {"token": " the", "mappings": [" the", " The"]},
                {"token": " dog", "mappings": [" Dog", " cat"]},
            ],
        },
    ]
}


def test_mappings_file_is_described_with_the_facts_and_printed_as_json(tmp_path: Path) -> None:
    path = write(tmp_path / "tables.json", TABLES)
    with FakeOpenAIServer() as server:
        proc = describe(
            "--mappings",
            path,
            "--base-url",
            server.base_url,
            "--llm-model",
            "fake-model",
            "--json",
            cache=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        assert server.calls == 2
        prompts = list(server.prompts)
    out = json.loads(proc.stdout)
    assert set(out) == {"descriptions", "llm_calls", "seconds"} and out["llm_calls"] == 2
    assert [d["name"] for d in out["descriptions"]] == ["plural-ish", "copy-ish"]
    for d in out["descriptions"]:
        assert set(d) == {"name", "status", "inputs", "pattern", "unclear", "category", "tags"}
        assert d["status"] in ("ok", "unclear") and (d["status"] == "unclear") == d["unclear"]
    # The measured relations are in the prompt as facts, with the verdict.
    plural = next(p for p in prompts if "Table for plural-ish" in p)
    assert "3 of 3 rows (all rows)" in plural and "plural" in plural
    assert "Verdict: a relation covers most rows" in plural
    # Same file again: the response cache answers, the LLM is not asked.
    with FakeOpenAIServer() as server:
        again = describe(
            "--mappings",
            path,
            "--base-url",
            server.base_url,
            "--llm-model",
            "fake-model",
            "--json",
            cache=tmp_path,
        )
        assert again.returncode == 0, again.stderr
        assert server.calls == 0
    assert json.loads(again.stdout)["llm_calls"] == 0
    assert json.loads(again.stdout)["descriptions"] == out["descriptions"]


def test_mappings_file_plain_output_names_each_table(tmp_path: Path) -> None:
    path = write(tmp_path / "tables.json", TABLES)
    with FakeOpenAIServer() as server:
        proc = describe(
            "--mappings", path, "--base-url", server.base_url, "--llm-model", "fake-model", cache=tmp_path
        )
    assert proc.returncode == 0, proc.stderr
    assert "plural-ish [" in proc.stdout and "copy-ish [" in proc.stdout
    assert "2 table(s) described" in proc.stdout


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"heads": []}, '"heads" is empty'),
        ({"heads": [{"name": "h", "salient": []}]}, 'head "h" has no salient rows'),
        ([1, 2], "heads"),
    ],
)
def test_bad_mappings_file_is_one_line_and_nothing_is_asked(
    tmp_path: Path, payload: object, message: str
) -> None:
    path = write(tmp_path / "bad.json", payload)
    with FakeOpenAIServer() as server:
        proc = describe(
            "--mappings", path, "--base-url", server.base_url, "--llm-model", "fake-model", cache=tmp_path
        )
        assert server.calls == 0
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path.name) in lines[0], proc.stderr
    assert message in lines[0], lines[0]
    assert proc.stdout == ""


def test_mappings_with_a_model_or_heads_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "tables.json", TABLES)
    proc = describe("some-model", "--mappings", path, cache=tmp_path)
    assert proc.returncode == 2 and "without a MODEL" in proc.stderr
    proc = describe("--mappings", path, "--heads", "0.0", cache=tmp_path)
    assert proc.returncode == 2 and "--heads" in proc.stderr
