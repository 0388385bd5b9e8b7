"""What the caller records and sends: every request a description took (first and retry) with
its parameters, system and user messages, and an HTTP 500 to structured output taken as a
refusal of ``response_format`` rather than retried six times."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2

from describer.llm import Describer, GenerationParams, OpenAIBackend, ResponseCache
from tests._fake_llm import completion_body, mock_client
from tests.test_llm import GOOD, RUN_ON, Script, make, run

# --- provenance, messages, refusals ---------------------------------------------------------------


def test_every_request_a_description_took_is_recorded_with_its_parameters() -> None:
    cut = httpx2.Response(200, json=completion_body(RUN_ON, tokens_out=300, finish_reason="length"))
    result = run(make(Script(cut, GOOD), max_tokens=300).describe("the prompt"))
    first, retry = result.requests
    assert first == {
        "request": "first",
        "temperature": 0.0,
        "max_tokens": 300,
        "structured": True,
        "cached": False,
    }
    assert retry == {**first, "request": "shorter", "temperature": 0.7}
    result = run(make(Script("not json", GOOD)).describe("p"))
    assert [r["request"] for r in result.requests] == ["first", "repair"]
    assert result.requests[1]["temperature"] == 0.0  # a repair keeps the run's parameters


def test_cached_requests_are_marked_cached(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    run(make(Script("not json", GOOD), cache=cache).describe("p"))
    again = run(make(Script(), cache=cache).describe("p"))
    assert again.llm_calls == 0 and [r["cached"] for r in again.requests] == [True, True]
    cache.close()


def test_system_and_user_messages_are_sent_as_given_and_the_retry_keeps_the_system_one() -> None:
    script = Script(
        httpx2.Response(200, json=completion_body(RUN_ON, tokens_out=300, finish_reason="length")), GOOD
    )
    messages = [{"role": "system", "content": "fixed rules"}, {"role": "user", "content": "this head"}]
    run(make(script, max_tokens=300).describe(messages))
    assert script.requests[0]["messages"] == messages
    system, user = script.requests[1]["messages"]
    assert system == messages[0] and user["content"].startswith("this head") and len(user["content"]) > 9


def test_a_500_on_response_format_is_a_refusal_not_six_retries() -> None:
    """llama-cpp-python's own server answers any json_schema response_format with HTTP 500: asked
    again at once without it, and the run goes on in text."""
    seen: list[bool] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        seen.append("response_format" in body)
        if "response_format" in body:
            return httpx2.Response(500, json={"error": {"message": "internal error"}})
        return httpx2.Response(200, json=completion_body(GOOD))

    backend = OpenAIBackend("http://llm.test/v1", "m", None, http_client=mock_client(handler))
    describer = Describer(backend, params=GenerationParams(), concurrency=1)
    result = run(describer.describe("p"))
    assert result.status != "failed" and seen == [True, False]
    run(describer.describe("q"))
    assert seen == [True, False, False]  # structured output stays off for the run


def test_a_500_that_is_not_about_the_format_is_still_retried() -> None:
    script = Script(500, 500, GOOD)
    describer = make(script)
    result = run(describer.describe("prompt"))
    assert result.status != "failed" and describer.usage.llm_calls == 3
    # The second try went without response_format at once; the third, after a pause, too.
    assert ["response_format" in r for r in script.requests] == [True, False, False]
