"""The describe job on a tiny random Llama analysed into a SQLite store, with the LLM faked at
the HTTP layer: provenance, resumption, failures, and what is never stored."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import httpx2
import pytest

import prompts
from describer.analyze import ensure_analysis
from describer.errors import HeadmapsError
from describer.llm import Describer, GenerationParams, OpenAIBackend, ResponseCache, RetryPolicy
from describer.pipeline import DescribeJob, evidence, parse_heads, select_heads
from store import open_store
from tests._fake_llm import answer_for, completion_body, mock_client
from tests._tiny import build_bpe_tokenizer, builtin_words, save_tiny_llama

SECRET = "sk-test-SECRET-pipeline-0987"
N_HEADS_TOTAL = 8  # 2 layers × 4 heads


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADMAPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A SQLite file holding the tiny model's analysis (made once, copied per test)."""
    base = tmp_path_factory.mktemp("analysed")
    tokenizer = build_bpe_tokenizer(builtin_words("general_copying", "name_copying"))
    model_dir = save_tiny_llama(base / "tiny-llama", tokenizer)
    db = base / "analysed.sqlite"
    with open_store(str(db)) as store:
        name = ensure_analysis(store, str(model_dir), device="cpu", warn=lambda _: None)
        assert ensure_analysis(store, str(model_dir), device="cpu") == name  # stored: no second analysis
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db, name


@pytest.fixture
def store(analysed: tuple[Path, str], tmp_path: Path):  # noqa: ANN201
    db = tmp_path / "headmaps.sqlite"
    shutil.copy(analysed[0], db)
    with open_store(str(db)) as s:
        yield s


class Endpoint:
    """A fake chat-completions endpoint: answers by prompt, optionally scripted per prompt."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.prompts: list[str] = []
        self.override: dict[str, list[object]] = {}
        self.hang_after: int | None = None
        self.headers: list[dict] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.headers.append(dict(request.headers))
        body = json.loads(request.content)
        prompt = body["messages"][0]["content"]
        self.prompts.append(prompt)
        if self.hang_after is not None and len(self.prompts) > self.hang_after:
            await asyncio.sleep(3600)  # the run is cancelled while this request is in flight
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        for marker, items in self.override.items():
            if marker in prompt and items:
                item = items.pop(0)
                if isinstance(item, int):
                    return httpx2.Response(item, json={"error": {"message": f"status {item}"}})
                return httpx2.Response(200, json=completion_body(str(item)))
        return httpx2.Response(200, json=completion_body(answer_for(prompt)))


def job_for(
    store, name: str, endpoint: Endpoint, cache: ResponseCache | None = None, **kwargs
) -> DescribeJob:  # noqa: ANN001
    backend = OpenAIBackend("http://llm.test/v1", "fake-model", SECRET, http_client=mock_client(endpoint))
    describer = Describer(
        backend,
        params=GenerationParams(max_tokens=64),
        concurrency=kwargs.pop("concurrency", 2),
        cache=cache,
        retry=RetryPolicy(max_retries=2, base_s=0.001, max_s=0.01),
    )
    return DescribeJob(store, name, prompts.load("salient_evidence"), describer, "llm.test", **kwargs)


# --- heads ---------------------------------------------------------------------------------------


def test_parse_and_select_heads() -> None:
    assert parse_heads("all") is None
    assert parse_heads("1.2, 0.3,1.2") == [(1, 2), (0, 3)]
    assert parse_heads("L1.H2,l0.h3, L1.H2") == [(1, 2), (0, 3)]  # the notation the pages use
    with pytest.raises(HeadmapsError, match="is not a head"):
        parse_heads("1-2")
    assert len(select_heads(None, 2, 4, "m")) == 8
    with pytest.raises(HeadmapsError, match=r"L2\.H0 is not a head of m"):
        select_heads([(2, 0)], 2, 4, "m")


# --- a full run ------------------------------------------------------------------------------------


def test_full_run_stores_descriptions_with_provenance(store, analysed) -> None:  # noqa: ANN001
    name = analysed[1]
    endpoint = Endpoint()
    job = job_for(store, name, endpoint)
    stats = asyncio.run(job.run())
    assert stats.done == N_HEADS_TOTAL and stats.llm_calls == N_HEADS_TOTAL and stats.errors == 0
    summary = job.summary(stats)
    assert summary.heads == N_HEADS_TOTAL and summary.described == N_HEADS_TOTAL and summary.failed == 0
    assert summary.unclear == sum(json.loads(answer_for(p))["unclear"] for p in endpoint.prompts)

    view = store.get_head(name, 1, 2)
    (d,) = view.descriptions
    template = prompts.load("salient_evidence")
    assert d.prompt_name == "salient_evidence" and d.prompt_sha == template.sha256
    # The prompt is rendered from the stored evidence, and re-rendering reproduces it exactly.
    assert d.rendered_prompt == template.render(**evidence(view, 2, 4)).text
    assert json.dumps(view.salient[0].token, ensure_ascii=False) in d.rendered_prompt
    assert "head 2 of layer\n1 " in d.rendered_prompt
    assert d.llm_model == "fake-model" and d.llm_host == "llm.test"
    first = {"temperature": 0.0, "max_tokens": 64, "structured": True}
    assert d.params == {**first, "requests": [{"request": "first", **first, "cached": False}]}
    assert d.tokens_in == 100 and d.tokens_out == 40 and d.latency_s is not None
    expected = json.loads(answer_for(d.rendered_prompt))
    assert (d.category, d.pattern, d.unclear) == (
        expected["category"],
        expected["pattern"],
        expected["unclear"],
    )
    assert d.raw_response == answer_for(d.rendered_prompt)
    (run,) = store.list_runs(kind="describe")
    assert (
        run.status == "done"
        and run.counts["done"] == N_HEADS_TOTAL
        and run.settings["prompt_sha"] == template.sha256
    )

    # Re-running does nothing: zero LLM calls.
    again = job_for(store, name, endpoint)
    stats = asyncio.run(again.run())
    assert stats.total == 0 and stats.llm_calls == 0 and len(endpoint.prompts) == N_HEADS_TOTAL


def test_heads_and_limit(store, analysed) -> None:  # noqa: ANN001
    name = analysed[1]
    endpoint = Endpoint()
    stats = asyncio.run(job_for(store, name, endpoint, heads=[(1, 3), (0, 1), (1, 0)], limit=2).run())
    assert stats.done == 2
    assert store.described_heads(name) == {(1, 3), (0, 1)}


def test_another_prompt_or_llm_is_described_alongside(store, analysed, tmp_path: Path) -> None:  # noqa: ANN001
    name = analysed[1]
    asyncio.run(job_for(store, name, Endpoint(), heads=[(0, 0)]).run())
    other = job_for(store, name, Endpoint(), heads=[(0, 0)])
    other.template = prompts.load("salient")
    assert asyncio.run(other.run()).done == 1
    user = tmp_path / "mine.j2"
    user.write_text("Head {{ layer }}.{{ head }}: {{ salient[0].token|tok }}. Answer in JSON.\n")
    mine = job_for(store, name, Endpoint(), heads=[(0, 0)])
    mine.template = prompts.load(str(user))
    assert asyncio.run(mine.run()).done == 1
    names = {d.prompt_name for d in store.get_head(name, 0, 0).descriptions}
    assert names == {"salient_evidence", "salient", str(user.resolve())}


# --- resumption ----------------------------------------------------------------------------------


def test_interrupted_run_resumes_without_repeating_a_call(store, analysed, tmp_path: Path) -> None:  # noqa: ANN001
    name = analysed[1]
    cache = ResponseCache(tmp_path / "llm-cache.sqlite")
    first = Endpoint()
    first.hang_after = 3
    job = job_for(store, name, first, cache, concurrency=1)

    async def interrupted() -> None:
        await asyncio.wait_for(job.run(), timeout=2.0)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(interrupted())
    stored = store.described_heads(name, include_failed=True)
    assert len(stored) == 3
    (run,) = store.list_runs(kind="describe")
    assert run.status == "interrupted"

    second = Endpoint()
    stats = asyncio.run(job_for(store, name, second, cache, concurrency=1).run())
    assert stats.done == N_HEADS_TOTAL - 3
    answered_before = set(first.prompts[:3])
    assert not answered_before & set(second.prompts)  # nothing finished is asked again
    assert len(second.prompts) == N_HEADS_TOTAL - 3
    assert (
        store.description_counts(name, prompts.load("salient_evidence").sha256, "fake-model")["described"]
        == 8
    )
    assert len(store.get_head(name, 0, 0).descriptions) == 1  # no duplicates


def test_failed_answers_are_stored_and_not_asked_again(store, analysed, tmp_path: Path) -> None:  # noqa: ANN001
    name = analysed[1]
    cache = ResponseCache(tmp_path / "llm-cache.sqlite")
    endpoint = Endpoint()
    endpoint.override["head 1 of layer\n0 "] = ["not json at all", "still { not json"]
    stats = asyncio.run(job_for(store, name, endpoint, cache).run())
    assert stats.done == 8 and stats.failed == 1 and stats.llm_calls == 9  # one repair request
    (d,) = store.get_head(name, 0, 1).descriptions
    assert d.status == "failed" and d.category is None and d.inputs is None
    assert "not json at all" in d.raw_response and "still { not json" in d.raw_response
    counts = store.description_counts(name, prompts.load("salient_evidence").sha256, "fake-model")
    assert counts == {"heads": 8, "described": 7, "unclear": counts["unclear"], "failed": 1}
    stats = asyncio.run(job_for(store, name, endpoint, cache).run())
    assert stats.llm_calls == 0 and stats.total == 0


def test_requests_that_fail_for_good_are_not_stored_and_retried_next_run(store, analysed) -> None:  # noqa: ANN001
    name = analysed[1]
    endpoint = Endpoint()
    endpoint.override["head 3 of layer\n1 "] = [503, 503, 503]
    stats = asyncio.run(job_for(store, name, endpoint).run())
    assert stats.done == 7 and stats.errors == 1 and "1.3" in stats.last_error
    assert (1, 3) not in store.described_heads(name, include_failed=True)
    stats = asyncio.run(job_for(store, name, endpoint).run())
    assert stats.done == 1 and stats.llm_calls == 1


def test_a_rejected_key_stops_the_run(store, analysed) -> None:  # noqa: ANN001
    name = analysed[1]
    endpoint = Endpoint()
    endpoint.override["layer\n0 "] = [401] * 10
    with pytest.raises(HeadmapsError, match="refused the run"):
        asyncio.run(job_for(store, name, endpoint, concurrency=1).run())
    (run,) = store.list_runs(kind="describe")
    assert run.status == "failed"


def test_api_key_never_reaches_the_database(store, analysed, tmp_path: Path) -> None:  # noqa: ANN001
    name = analysed[1]
    endpoint = Endpoint()
    cache = ResponseCache(tmp_path / "llm-cache.sqlite")
    asyncio.run(job_for(store, name, endpoint, cache).run())
    assert endpoint.headers[0]["authorization"] == f"Bearer {SECRET}"  # it was used
    store.close()
    cache.close()
    for path in tmp_path.glob("*.sqlite*"):
        assert SECRET.encode() not in path.read_bytes(), path


# --- the main job with a backend chosen by name ------------------------------------------------------


def test_describe_model_with_the_fake_backend_describes_every_head_then_nothing(store, analysed) -> None:  # noqa: ANN001
    from describer.llm import connect
    from describer.pipeline import describe_model

    db, name = analysed
    model_dir = str(db.parent / "tiny-llama")  # the stored analysis is found: nothing is analysed
    template = prompts.load("salient_evidence")
    with connect(None, None, backend="fake") as (endpoint, backend):
        job, stats = describe_model(store, model_dir, template, endpoint, backend, heads=[(0, 1), (1, 3)])
    assert (stats.total, stats.done, stats.errors) == (2, 2, 0)
    assert len(backend.history) == stats.llm_calls >= 2
    assert job.summary(stats).described == 2
    described = store.described_heads(name, template.sha256, endpoint.label, include_failed=True)
    assert set(described) == {(0, 1), (1, 3)}
    with connect(None, None, backend="fake") as (endpoint, backend):
        _, again = describe_model(store, model_dir, template, endpoint, backend, heads=[(0, 1), (1, 3)])
    assert (again.total, again.llm_calls, backend.history) == (0, 0, [])
