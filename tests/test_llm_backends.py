"""The LLM backend registry: backends by name, the fake one answering like a real endpoint, and
the endpoint options checked before anything is started."""

from __future__ import annotations

import asyncio
import json

import pytest

from describer.errors import HeadmapsError
from describer.llm import Describer, FakeBackend, GenerationParams, backend_names, connect, register_backend
from describer.llm.fake import default_answer


def test_the_three_backends_are_registered() -> None:
    assert {"openai", "local", "fake"} <= set(backend_names())


def test_unknown_backend_names_the_known_ones() -> None:
    with (
        pytest.raises(HeadmapsError, match="unknown LLM backend 'nope'; known: .*fake.*openai"),
        connect(None, None, backend="nope"),
    ):
        pass


def test_a_name_registers_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_backend("fake")(lambda base_url, llm_model: None)  # type: ignore[arg-type, return-value]


def test_base_url_needs_a_model_name() -> None:
    with (
        pytest.raises(HeadmapsError, match="--base-url needs --llm-model"),
        connect("http://127.0.0.1:9/v1", None),
    ):
        pass


def test_a_remote_model_name_without_base_url_starts_nothing() -> None:
    # The local backend refuses before it would start its server.
    with pytest.raises(HeadmapsError, match="--llm-model gpt-4o needs --base-url"), connect(None, "gpt-4o"):
        pass


def test_openai_backend_by_default_with_a_base_url() -> None:
    with connect("http://127.0.0.1:9/v1", "some-model") as (endpoint, backend):
        assert (endpoint.label, endpoint.host, endpoint.local) == ("some-model", "127.0.0.1:9", False)
        assert backend.model == "some-model" and endpoint.default_concurrency == 8
        asyncio.run(backend.aclose())


def test_fake_backend_answers_valid_descriptions_and_records_requests() -> None:
    warned: list[str] = []
    with connect(None, None, backend="fake", warn=warned.append) as (endpoint, backend):
        assert isinstance(backend, FakeBackend) and not endpoint.local and warned == []
        backend.enqueue("no JSON here")  # the first answer is unusable: the caller repairs it
        describer = Describer(backend, params=GenerationParams(max_tokens=64), model_label=endpoint.label)
        result = asyncio.run(describer.describe("Describe head 1.2"))
    assert result.status in ("ok", "unclear") and result.llm_calls == 2
    assert result.description is not None
    assert (
        result.description.category
        == json.loads(default_answer(backend.history[-1][0][-1]["content"]))["category"]
    )
    assert backend.history[0][0] == [{"role": "user", "content": "Describe head 1.2"}]
    assert "could not be used" in backend.history[1][0][-1]["content"]


def test_default_answer_depends_on_the_prompt() -> None:
    categories = {json.loads(default_answer(f"prompt {i}"))["category"] for i in range(40)}
    assert len(categories) > 1
    assert default_answer("same") == default_answer("same")
