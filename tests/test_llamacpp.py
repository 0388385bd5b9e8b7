"""The offline describer's runtime, for real: Qwen2.5-Coder-0.5B-Instruct from its GGUF run by
llama.cpp in this process (needs ``llama-cpp-python``, which ``.ci/run`` installs, and the model
packages). One loaded model is shared by the module."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import prompts
from describer.errors import HeadmapsError
from describer.evidence import table_evidence
from describer.llm import Describer, GenerationParams, LLMError, parse_description
from describer.llm.answer import small_json_schema
from describer.mapping_tables import MappingTable

pytest.importorskip("llama_cpp", reason="the offline runtime: bash .ci/llama-cpp.sh installs it")

from describer.llm.llamacpp import LlamaCppBackend  # noqa: E402
from describer.llm.local import LOCAL_MODEL, local_model_file  # noqa: E402

PLURAL = MappingTable(
    "t1",
    tuple(
        (f" {w}", (f" {p}", " the", "ing", f" {w.upper()}"))
        for w, p in [
            ("cat", "cats"),
            ("house", "houses"),
            ("box", "boxes"),
            ("city", "cities"),
            ("mouse", "mice"),
            ("child", "children"),
            ("tree", "trees"),
            ("car", "cars"),
        ]
    ),
)
JUNK = MappingTable(
    "t2",
    (
        ("ing", (" poll", "());", " Sag")),
        (" cart", ("ovi", " Hue", "_{")),
        ("(", (" weary", " zn", "ahl")),
        (" lamp", ("ptr", " Oslo", "!!")),
        ("ux", (" 1987", " grin", "=>")),
        (" sigma", ("ond", " pest", ";")),
    ),
)


@pytest.fixture(scope="module")
def guided() -> LlamaCppBackend:
    backend = LlamaCppBackend(local_model_file(), LOCAL_MODEL, mode="guided")
    backend.load()
    yield backend
    backend.close()


def ask(backend: LlamaCppBackend, table: MappingTable, **params: object):  # noqa: ANN201
    rendered = prompts.load("facts").render(**table_evidence(table))
    describer = Describer(backend, params=GenerationParams(**params), concurrency=1)
    return asyncio.run(describer.describe(rendered.messages))


def test_guided_answers_are_in_the_schema_and_name_what_the_facts_show(guided: LlamaCppBackend) -> None:
    result = ask(guided, PLURAL, max_tokens=160)
    assert result.status == "ok" and result.llm_calls == 1, result.raw
    d = result.description
    assert not d.unclear and d.category != "unclear"
    assert "plural" in f"{d.inputs} {d.pattern} {' '.join(d.tags)}".lower(), result.raw
    assert len(d.pattern) < 400 and len(d.tags) <= 3 and d.reasoning == ""
    assert list(json.loads(result.raw)) == ["unclear", "inputs", "pattern", "category", "tags"]
    assert 0 < result.tokens_out <= 40 + 56 + 24 + 12 * 2


def test_guided_junk_is_unclear_with_category_unclear(guided: LlamaCppBackend) -> None:
    result = ask(guided, JUNK)
    assert result.status == "unclear", result.raw
    assert result.description.unclear and result.description.category == "unclear"


def test_guided_is_deterministic_at_temperature_0(guided: LlamaCppBackend) -> None:
    assert ask(guided, JUNK).raw == ask(guided, JUNK).raw


def test_grammar_mode_answers_in_the_bounded_small_schema() -> None:
    backend = LlamaCppBackend(local_model_file(), LOCAL_MODEL, mode="grammar")
    try:
        result = ask(backend, PLURAL, max_tokens=160)
    finally:
        backend.close()
    assert result.status in ("ok", "unclear"), result.raw
    answer = json.loads(result.raw)
    assert set(answer) == set(small_json_schema()["properties"])
    for name in ("inputs", "pattern"):
        assert len(answer[name]) <= small_json_schema()["properties"][name]["maxLength"]
    description, error = parse_description(result.raw)
    assert error is None and description.reasoning == ""


def test_a_missing_model_file_or_an_unknown_mode_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="does not exist"):
        LlamaCppBackend(tmp_path / "nope.gguf", "m").load()
    with pytest.raises(HeadmapsError, match="unknown local decoding mode 'fast'"):
        LlamaCppBackend(tmp_path / "nope.gguf", "m", mode="fast")  # type: ignore[arg-type]
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF not really")
    with pytest.raises(LLMError, match="cannot load"):
        LlamaCppBackend(broken, "m").load()


def test_preflight_checks_without_loading_and_refuses_what_is_not_a_gguf(tmp_path: Path) -> None:
    backend = LlamaCppBackend(local_model_file(), LOCAL_MODEL)
    asyncio.run(backend.preflight())
    assert backend._llm is None  # loaded at the first request, after the analysis
    other = tmp_path / "model.gguf"
    other.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(LLMError, match="is not a GGUF file"):
        asyncio.run(LlamaCppBackend(other, "m").preflight())
