"""The LLM client against a fake transport: the ``openai`` SDK runs for real, only the HTTP
responses are scripted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx2
import pytest

from describer.errors import HeadmapsError
from describer.llm import (
    Describer,
    GenerationParams,
    LLMError,
    OpenAIBackend,
    ResponseCache,
    RetryPolicy,
    extract_json,
    parse_description,
)
from tests._fake_llm import answer_for, completion_body, mock_client

SECRET = "sk-test-SECRET-1234567890"
GOOD = answer_for("anything")


class Script:
    """A scripted endpoint: each completion request takes the next item (a response body text,
    an HTTP status, or an exception to raise); it records every request body and header."""

    def __init__(self, *items: object, delay_s: float = 0.0, models: list[str] | None = None) -> None:
        self.items = list(items)
        self.delay_s = delay_s
        self.models = models
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.headers.append(dict(request.headers))
        if request.url.path.endswith("/models"):
            if self.models is None:
                return httpx2.Response(404, json={"error": {"message": "no models endpoint"}})
            return httpx2.Response(200, json={"object": "list", "data": [{"id": m} for m in self.models]})
        body = json.loads(request.content)
        self.requests.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            item = self.items.pop(0) if self.items else GOOD
        finally:
            self.in_flight -= 1
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, int):
            return httpx2.Response(item, json={"error": {"message": f"status {item}"}})
        if isinstance(item, httpx2.Response):
            return item
        return httpx2.Response(200, json=completion_body(str(item)))


def make(
    script: Script, cache: ResponseCache | None = None, concurrency: int = 4, **params: object
) -> Describer:
    backend = OpenAIBackend("http://llm.test/v1", "fake-model", SECRET, http_client=mock_client(script))
    return Describer(
        backend,
        params=GenerationParams(**params),
        concurrency=concurrency,
        cache=cache,
        retry=RetryPolicy(max_retries=4, base_s=0.001, max_s=0.01),
    )


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


# --- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure", [429, 500, 502, 503, httpx2.ReadTimeout("slow"), httpx2.ConnectError("down")]
)
def test_transient_failures_are_retried(failure: object) -> None:
    script = Script(failure, failure, GOOD)
    describer = make(script)
    result = run(describer.describe("prompt"))
    assert result.status in ("ok", "unclear")
    assert result.llm_calls == 3 and len(script.requests) == 3
    assert describer.usage.retries == 2 and describer.usage.llm_calls == 3


def test_non_retryable_error_is_raised_at_once() -> None:
    import openai

    script = Script(400)
    with pytest.raises(openai.BadRequestError):
        run(make(script).describe("prompt"))
    assert len(script.requests) == 1


def test_retries_give_up_after_max_retries() -> None:
    import openai

    script = Script(*[503] * 10)
    with pytest.raises(openai.InternalServerError):
        run(make(script).describe("prompt"))
    assert len(script.requests) == 5  # the first try and 4 retries


def test_backoff_grows_exponentially_with_jitter_and_honours_retry_after() -> None:
    import openai

    policy = RetryPolicy(max_retries=5, base_s=1.0, max_s=30.0)
    exc = openai.RateLimitError(
        "slow down", response=httpx2.Response(429, request=httpx2.Request("POST", "http://x")), body=None
    )
    for attempt, base in enumerate([1, 2, 4, 8, 16, 30]):
        delays = [policy.delay(attempt, exc) for _ in range(50)]
        assert all(base <= d <= base * 1.25 for d in delays)
        assert len(set(delays)) > 1  # jittered
    hinted = openai.RateLimitError(
        "slow down",
        response=httpx2.Response(
            429, headers={"retry-after": "3"}, request=httpx2.Request("POST", "http://x")
        ),
        body=None,
    )
    assert 3 <= policy.delay(0, hinted) <= 3.75


def test_backoff_sleeps_between_retries() -> None:
    script = Script(429, 429, GOOD)
    describer = make(script)
    describer.retry = RetryPolicy(max_retries=3, base_s=0.05, max_s=1.0)
    start = asyncio.new_event_loop()
    try:
        t0 = start.time()
        start.run_until_complete(describer.describe("p"))
        assert start.time() - t0 >= 0.05 + 0.1  # 0.05 then 0.1 (before jitter)
    finally:
        start.close()


# --- parsing and repair -------------------------------------------------------------------------


def test_extract_json_from_prose_and_fences() -> None:
    assert extract_json('Sure! ```json\n{"a": 1}\n``` done') == {"a": 1}
    assert extract_json('noise {not json} then {"b": {"c": 2}} tail') == {"b": {"c": 2}}
    assert extract_json("no object here [1, 2]") is None


def test_parse_rejects_unknown_category_and_missing_fields() -> None:
    bad = json.loads(GOOD) | {"category": "vibes"}
    description, error = parse_description(json.dumps(bad))
    assert description is None and "category" in error
    description, error = parse_description('{"reasoning": "x"}')
    assert description is None and "inputs" in error


def test_repair_retry_fixes_a_bad_answer() -> None:
    script = Script("I think this head copies words.", GOOD)
    result = run(make(script).describe("prompt"))
    assert result.status != "failed" and result.description is not None
    assert result.llm_calls == 2
    repair = script.requests[1]["messages"]
    assert [m["role"] for m in repair] == ["user", "assistant", "user"]
    assert repair[1]["content"] == "I think this head copies words."
    assert "no JSON object" in repair[2]["content"]
    assert "I think this head copies words." in result.raw and "--- repair ---" in result.raw


def test_still_bad_after_repair_is_failed_with_raw_text() -> None:
    script = Script("nonsense one", '{"reasoning": "half"}')
    result = run(make(script).describe("prompt"))
    assert result.status == "failed" and result.description is None
    assert "nonsense one" in result.raw and '{"reasoning": "half"}' in result.raw
    assert "after one repair request" in result.error
    assert len(script.requests) == 2  # exactly one repair, no more


RUN_ON = "{\"reasoning\": \"The tokens are: 'a', 'b', 'a', 'b', 'a', 'b',"


@pytest.mark.parametrize("signal", ["finish_reason", "token_count"])
def test_cut_off_answer_is_asked_afresh_for_a_shorter_one(signal: str) -> None:
    """An answer stopped at the length limit is not shown back to the model (it would continue
    its run-on list): the prompt is sent again on its own, asking for a short answer."""
    cut = completion_body(
        RUN_ON, tokens_out=300, finish_reason="length" if signal == "finish_reason" else "stop"
    )
    if signal == "finish_reason":
        cut["usage"] = None  # an endpoint that reports no usage: finish_reason alone tells
    script = Script(httpx2.Response(200, json=cut), GOOD)
    result = run(make(script).describe("the prompt"))
    assert result.status != "failed" and result.llm_calls == 2
    (retry,) = script.requests[1]["messages"]
    assert retry["role"] == "user" and retry["content"].startswith("the prompt")
    assert "do not list or repeat the tokens" in retry["content"]
    assert script.requests[0]["temperature"] == 0 and script.requests[1]["temperature"] == 0.7
    assert RUN_ON in result.raw and "--- repair ---" in result.raw


def test_cut_off_answer_still_cut_off_is_failed_and_says_why() -> None:
    cut = httpx2.Response(200, json=completion_body(RUN_ON, tokens_out=300, finish_reason="length"))
    script = Script(cut, cut)
    result = run(make(script).describe("p"))
    assert result.status == "failed" and len(script.requests) == 2
    assert "cut off at the length limit (300 tokens)" in result.error
    assert "after one repair request" in result.error


def test_short_malformed_answer_is_not_treated_as_cut_off() -> None:
    script = Script(httpx2.Response(200, json=completion_body("no json here", tokens_out=299)), GOOD)
    run(make(script).describe("p"))
    assert [m["role"] for m in script.requests[1]["messages"]] == ["user", "assistant", "user"]
    assert script.requests[1]["temperature"] == 0


def test_cut_off_retry_is_cached_under_its_own_parameters(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    cut = httpx2.Response(200, json=completion_body(RUN_ON, tokens_out=300, finish_reason="length"))
    first = run(make(Script(cut, GOOD), cache).describe("p"))
    again = make(Script(), cache)
    result = run(again.describe("p"))
    assert result.llm_calls == 0 and again.usage.cache_hits == 2
    assert result.description == first.description


def test_unclear_answer_gets_unclear_status() -> None:
    answer = json.loads(GOOD) | {"unclear": True, "category": "unclear", "pattern": "Unclear"}
    result = run(make(Script(json.dumps(answer))).describe("prompt"))
    assert result.status == "unclear"


# --- structured output ----------------------------------------------------------------------------


def test_json_schema_response_format_is_sent() -> None:
    script = Script(GOOD)
    run(make(script).describe("prompt"))
    fmt = script.requests[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert set(fmt["json_schema"]["schema"]["required"]) == {
        "reasoning",
        "inputs",
        "pattern",
        "unclear",
        "category",
        "tags",
    }
    assert script.requests[0]["temperature"] == 0 and script.requests[0]["max_tokens"] == 300


def test_endpoint_without_structured_output_falls_back_to_text() -> None:
    refusal = httpx2.Response(
        400, json={"error": {"message": "response_format json_schema is not supported"}}
    )
    script = Script(refusal, GOOD, GOOD)
    describer = make(script)
    assert run(describer.describe("one")).status != "failed"
    assert run(describer.describe("two")).status != "failed"
    assert "response_format" in script.requests[0]
    assert "response_format" not in script.requests[1] and "response_format" not in script.requests[2]


# --- cache ---------------------------------------------------------------------------------------


def test_cache_hit_makes_zero_calls_and_survives_a_new_process(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    script = Script()
    first = run(make(script, cache).describe("the prompt"))
    assert len(script.requests) == 1
    again = run(make(script, cache).describe("the prompt"))
    assert len(script.requests) == 1 and again.llm_calls == 0
    assert again.description == first.description
    cache.close()
    reopened = ResponseCache(tmp_path / "cache.sqlite")
    fresh = make(Script(), reopened)
    assert run(fresh.describe("the prompt")).llm_calls == 0 and fresh.usage.llm_calls == 0
    # Other parameters or another prompt are other keys.
    assert run(make(script, reopened, max_tokens=50).describe("the prompt")).llm_calls == 1
    assert run(make(script, reopened).describe("another prompt")).llm_calls == 1


def test_failed_repair_is_cached_too(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    script = Script("bad", "still bad")
    assert run(make(script, cache).describe("p")).status == "failed"
    assert run(make(Script(), cache).describe("p")).llm_calls == 0


def test_api_key_is_sent_but_never_cached(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    script = Script()
    result = run(make(script, cache).describe("p"))
    cache.close()
    assert script.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert SECRET.encode() not in (tmp_path / "cache.sqlite").read_bytes()
    assert SECRET not in result.model_dump_json()


# --- concurrency ---------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3, 8])
def test_concurrency_bound_is_respected(limit: int) -> None:
    script = Script(delay_s=0.02)
    describer = make(script, concurrency=limit)

    async def many() -> None:
        await asyncio.gather(*(describer.describe(f"prompt {i}") for i in range(24)))

    run(many())
    assert len(script.requests) == 24
    assert script.max_in_flight == limit


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(HeadmapsError):
        make(Script(), concurrency=0)


# --- preflight -----------------------------------------------------------------------------------


def preflight(script: Script, key: str | None = SECRET, model: str = "fake-model") -> None:
    backend = OpenAIBackend("http://llm.test/v1", model, key, http_client=mock_client(script))
    run(backend.preflight())


def test_preflight_accepts_a_listed_model() -> None:
    preflight(Script(models=["fake-model", "other"]))


def test_preflight_unknown_model_from_the_list() -> None:
    with pytest.raises(LLMError, match="unknown LLM model 'nope'.*fake-model"):
        preflight(Script(models=["fake-model"]), model="nope")


def test_preflight_without_models_endpoint_sends_a_tiny_request() -> None:
    script = Script(GOOD)
    preflight(script)
    assert script.requests[0]["max_tokens"] == 1
    with pytest.raises(LLMError, match="unknown LLM model"):
        preflight(Script(404))


def test_preflight_missing_key_and_rejected_key() -> None:
    unauthorised = Script()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(401, json={"error": {"message": "no key"}})

    unauthorised.__call__ = handler  # type: ignore[method-assign]
    backend = OpenAIBackend("http://llm.test/v1", "m", None, http_client=mock_client(handler))
    with pytest.raises(LLMError, match="needs an API key: set HEADMAPS_LLM_API_KEY or OPENAI_API_KEY"):
        run(backend.preflight())
    backend = OpenAIBackend("http://llm.test/v1", "m", "wrong", http_client=mock_client(handler))
    with pytest.raises(LLMError, match="rejected the API key") as info:
        run(backend.preflight())
    assert "wrong" not in str(info.value)


def test_preflight_unreachable_endpoint() -> None:
    from describer.llm.local import free_port

    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", None, timeout_s=5)
    with pytest.raises(LLMError, match="cannot reach the LLM endpoint"):
        run(backend.preflight())
