"""Sending prompts: the response cache first, then the backend with retries and bounded
concurrency (``CachedCaller``); ``Describer`` turns one rendered prompt into a validated
``DescribeResult``: structured output where the endpoint supports it, otherwise the JSON is
extracted from the text and validated, with one repair request; what still fails comes back
with status ``failed`` and the raw text."""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from describer.errors import HeadmapsError
from describer.llm.answer import CATEGORIES, HeadDescription, parse_description
from describer.llm.base import Completion, GenerationParams, LLMBackend, Messages
from describer.llm.cache import ResponseCache
from describer.llm.openai_api import format_refusal, retry_after, retryable

REPAIR = (
    "Your answer could not be used: {error}. Reply again with only one JSON object with the keys "
    '"reasoning", "inputs", "pattern", "unclear", "category" (one of: {categories}) and "tags".'
)

SHORTER = (
    "\n\nKeep your answer short: each text field is one sentence in your own words; do not list or "
    "repeat the tokens."
)
"""Appended to the prompt when the first answer ran into the length limit. That answer is not
sent back: a small model shown its own run-on answer (typically a token list repeating itself)
continues it again (it did on every gemma-3-270m head we tried), while the prompt asked afresh
with this line, sampled, sometimes gets a complete one (4 of 26 retries there)."""

RETRY_TEMPERATURE = 0.7
"""That second request samples at least this hot: greedy decoding that looped once loops again
on nearly the same prompt."""


# --- the describer -------------------------------------------------------------------------------


class DescribeResult(BaseModel):
    """One head's answer, or why there is none."""

    status: Literal["ok", "unclear", "failed"]
    description: HeadDescription | None
    raw: str
    """Everything the LLM answered (both answers, when a repair was asked for)."""
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    llm_calls: int = 0
    """Requests sent for this result (0 when every answer came from the cache)."""
    requests: list[dict[str, Any]] = []
    """Every request this result took, first and retry: why it was sent, its generation
    parameters and whether the answer came from the cache (stored with the description)."""


@dataclass
class Usage:
    """Totals over the requests one ``Describer`` sent (cache hits cost nothing)."""

    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    retries: int = 0
    cache_hits: int = 0


@dataclass
class RetryPolicy:
    max_retries: int = 5
    base_s: float = 1.0
    max_s: float = 30.0

    def delay(self, attempt: int, exc: BaseException) -> float:
        hinted = retry_after(exc)
        backoff = min(self.max_s, self.base_s * 2**attempt)
        wait = hinted if hinted is not None else backoff
        return min(self.max_s, wait) * (1 + random.uniform(0, 0.25))  # jitter spreads retries


@dataclass
class CachedCaller:
    """Sends messages to an endpoint: the response cache first, then the backend with retries
    (exponential backoff on 429, 5xx and timeouts), at most ``concurrency`` requests in flight,
    counting calls, tokens and cache hits in ``usage``."""

    backend: LLMBackend
    params: GenerationParams = field(default_factory=GenerationParams)
    concurrency: int = 4
    cache: ResponseCache | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    model_label: str | None = None
    """The LLM model name recorded and used in cache keys (default: the backend's)."""
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise HeadmapsError("--concurrency must be at least 1")
        self._slots = asyncio.Semaphore(self.concurrency)
        self._plain = False
        """Structured output turned off for the rest of the run (see ``complete``)."""

    @property
    def label(self) -> str:
        return self.model_label or self.backend.model

    async def complete(
        self, messages: Messages, params: GenerationParams | None = None
    ) -> tuple[Completion, int]:
        """The answer to ``messages`` (with ``params``, by default the caller's) and how many
        requests it took (0 from the cache)."""
        params = params or self.params
        key = ResponseCache.key(messages, self.label, params)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.usage.cache_hits += 1
            return hit, 0
        calls = 0
        if self._plain:
            params = params.model_copy(update={"structured": False})
        plain_tried = False
        for attempt in range(self.retry.max_retries + 1):
            async with self._slots:
                calls += 1
                self.usage.llm_calls += 1
                try:
                    completion = await self.backend.complete(messages, params)
                except Exception as exc:
                    if not retryable(exc) or attempt == self.retry.max_retries:
                        raise
                    failure = exc
                else:
                    if plain_tried:
                        self._plain = True  # the endpoint answers, just not in a schema
                    break
            self.usage.retries += 1
            if params.structured and not plain_tried and format_refusal(failure):
                # An HTTP 500 to a structured request may be a refusal of response_format
                # (llama-cpp-python's server): ask again at once without it, not six times.
                params, plain_tried = params.model_copy(update={"structured": False}), True
                continue
            await asyncio.sleep(self.retry.delay(attempt, failure))  # outside the slot
        self.usage.tokens_in += completion.tokens_in
        self.usage.tokens_out += completion.tokens_out
        if self.cache is not None:
            self.cache.put(key, completion)
        return completion, calls


@dataclass
class Describer(CachedCaller):
    """Turns rendered prompts into validated descriptions with bounded concurrency."""

    async def describe(self, prompt: str | Messages) -> DescribeResult:
        """Ask once; on an unusable answer ask once more: with the problem stated, or, when the
        answer was cut off at the length limit, afresh asking for a shorter one. ``prompt`` is
        one user message, or the messages (a fixed system message and this head's user one)."""
        messages: Messages = (
            [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        )
        first, calls = await self.complete(messages)
        requests = [_request("first", self.params, calls)]
        description, error = parse_description(first.text)
        total = [first]
        if description is None:
            # A cached answer does not carry finish_reason; its token count tells.
            if first.truncated or first.tokens_out >= self.params.max_tokens:
                error = (
                    f"the answer was cut off at the length limit ({self.params.max_tokens} tokens): {error}"
                )
                repair = messages[:-1] + [{"role": "user", "content": messages[-1]["content"] + SHORTER}]
                params = self.params.model_copy(
                    update={"temperature": max(self.params.temperature, RETRY_TEMPERATURE)}
                )
                why = "shorter"
            else:
                params = None
                why = "repair"
                repair = messages + [
                    {"role": "assistant", "content": first.text},
                    {"role": "user", "content": REPAIR.format(error=error, categories=", ".join(CATEGORIES))},
                ]
            second, more = await self.complete(repair, params)
            calls += more
            requests.append(_request(why, params or self.params, more))
            total.append(second)
            description, second_error = parse_description(second.text)
            if description is None:
                error = f"{error}; after one repair request: {second_error}"
        raw = total[0].text if len(total) == 1 else f"{total[0].text}\n--- repair ---\n{total[1].text}"
        return DescribeResult(
            status=description.status if description else "failed",
            description=description,
            raw=raw,
            error=None if description else error,
            tokens_in=sum(c.tokens_in for c in total),
            tokens_out=sum(c.tokens_out for c in total),
            latency_s=sum(c.latency_s for c in total),
            llm_calls=calls,
            requests=requests,
        )


def _request(why: str, params: GenerationParams, calls: int) -> dict[str, Any]:
    return {"request": why, **params.model_dump(), "cached": calls == 0}


# Prices in US dollars per million tokens (input, output), for the progress bar's estimate.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
}


def estimated_cost(model: str, tokens_in: int, tokens_out: int, local: bool = False) -> float | None:
    """Dollars for the tokens so far; 0 for the local model, None for an unknown price.
    ``HEADMAPS_LLM_PRICE="IN,OUT"`` (dollars per million tokens) sets the price of any model."""
    if local:
        return 0.0
    override = os.environ.get("HEADMAPS_LLM_PRICE")
    if override:
        try:
            p_in, p_out = (float(x) for x in override.split(","))
        except ValueError:
            return None
    elif model in PRICES:
        p_in, p_out = PRICES[model]
    else:
        return None
    return (tokens_in * p_in + tokens_out * p_out) / 1e6
