"""The LLM client: any OpenAI-compatible endpoint, bounded concurrency, retries, a response cache.

``LLMBackend`` is the one interface (``complete`` and ``preflight``); ``OpenAIBackend`` speaks
the OpenAI chat-completions API through the ``openai`` SDK to OpenAI itself, vLLM, Ollama,
llama.cpp's server or ``transformers serve`` (the offline default, see ``describer.llm.local``).
Tests fake the HTTP layer by handing the backend an ``httpx2`` client with a mock transport.

``Describer`` turns one rendered prompt into a ``DescribeResult``: structured output where the
endpoint supports it, otherwise the JSON is extracted from the text and validated, with one
repair request; what still fails comes back with status ``failed`` and the raw text. The API
key is held only by the SDK client: it is never part of a result, a cache key or a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sqlite3
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from describer.errors import HeadmapsError
from describer.llm.answer import HeadDescription, response_json_schema

API_KEY_ENVS = ("HEADMAPS_LLM_API_KEY", "OPENAI_API_KEY")
"""Where the API key is read from, first match wins. It is never stored."""

KEYED_HOSTS = ("openai.com", "anthropic.com", "openrouter.ai", "groq.com", "together.xyz", "mistral.ai")
"""Hosts known to need a key: a missing one is reported without sending anything."""

Messages = list[dict[str, str]]


def api_key_from_env() -> str | None:
    for name in API_KEY_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def host_of(base_url: str) -> str:
    parsed = urlparse(base_url)
    return parsed.netloc or base_url


class GenerationParams(BaseModel):
    """How each description is generated; part of the cache key and stored with it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    """0 makes a re-run reproduce the same answer where the endpoint is deterministic."""
    max_tokens: int = Field(300, ge=1)
    """Caps the answer: the JSON fits in about 150 tokens, and long answers cost time."""
    structured: bool = True
    """Ask for ``response_format`` JSON-schema output (endpoints without it ignore or refuse it;
    a refusal turns it off for the rest of the run)."""


class LLMError(HeadmapsError):
    """The endpoint refused the run as a whole (bad key, unknown model, unreachable)."""


@dataclass
class Completion:
    """One answer from the endpoint."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    truncated: bool = False
    """The endpoint stopped at the length limit (``finish_reason`` "length")."""


class LLMBackend(ABC):
    """One way of reaching an LLM. ``complete`` raises ``openai`` exceptions on failure, so the
    retry policy in ``Describer`` is the same for every backend."""

    model: str
    """The model name requests carry."""
    host: str
    """Where the requests go (recorded with each description; never a key)."""

    @abstractmethod
    async def complete(self, messages: Messages, params: GenerationParams) -> Completion: ...

    async def preflight(self) -> None:  # noqa: B027  (optional: a backend may have nothing to check)
        """Raise ``LLMError`` when the endpoint cannot serve this model at all."""

    async def aclose(self) -> None:  # noqa: B027
        """Release connections."""


class OpenAIBackend(LLMBackend):
    """The OpenAI chat-completions API through the async ``openai`` SDK."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 120.0,
        http_client: Any = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.host = host_of(base_url)
        self.has_key = bool(api_key)
        # Local servers take any key; the SDK insists on one, so send a placeholder.
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "no-key",
            max_retries=0,  # Describer retries, so that it can count and bound every request
            timeout=timeout_s,
            http_client=http_client,
        )
        self._structured_ok = True

    async def complete(self, messages: Messages, params: GenerationParams) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }
        if params.structured and self._structured_ok:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "head_description", "schema": response_json_schema(), "strict": True},
            }
        start = time.perf_counter()
        try:
            response = await self._client.chat.completions.create(**kwargs)
        except openai.BadRequestError as exc:
            if "response_format" not in kwargs or not _mentions_format(exc):
                raise
            self._structured_ok = False  # this endpoint has no structured output: ask for text
            kwargs.pop("response_format")
            start = time.perf_counter()
            response = await self._client.chat.completions.create(**kwargs)
        latency = time.perf_counter() - start
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice and choice.message else None) or ""
        usage = response.usage
        return Completion(
            text=text,
            tokens_in=int(usage.prompt_tokens or 0) if usage else 0,
            tokens_out=int(usage.completion_tokens or 0) if usage else 0,
            latency_s=latency,
            truncated=bool(choice and choice.finish_reason == "length"),
        )

    async def preflight(self) -> None:
        key_hint = f"set {' or '.join(API_KEY_ENVS)}"
        if not self.has_key and self.host.endswith(KEYED_HOSTS):
            raise LLMError(f"the LLM endpoint {self.host} needs an API key: {key_hint}")
        try:
            listed = await self._client.models.list()
            ids: list[str] | None = [m.id for m in listed.data]
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._auth_error(exc, key_hint) from None
        except openai.APIConnectionError as exc:
            raise LLMError(self._unreachable(exc)) from None
        except openai.APIStatusError:
            ids = None  # many servers have no usable /models; ask for one token instead
        if ids:
            if self.model not in ids:
                shown = ", ".join(sorted(ids)[:8]) + (", …" if len(ids) > 8 else "")
                raise LLMError(f"unknown LLM model {self.model!r} at {self.host}; it serves: {shown}")
            return
        try:
            await self._client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": "Say OK."}], max_tokens=1
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._auth_error(exc, key_hint) from None
        except openai.APIConnectionError as exc:
            raise LLMError(self._unreachable(exc)) from None
        except (openai.NotFoundError, openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            raise LLMError(
                f"unknown LLM model {self.model!r} at {self.host} (HTTP {exc.status_code}: {_detail(exc)})"
            ) from None
        except openai.APIStatusError as exc:
            raise LLMError(
                f"the LLM endpoint {self.base_url} failed a test request ({_detail(exc)})"
            ) from None

    def _auth_error(self, exc: openai.APIStatusError, key_hint: str) -> LLMError:
        if not self.has_key:
            return LLMError(f"the LLM endpoint {self.host} needs an API key: {key_hint}")
        return LLMError(f"the LLM endpoint {self.host} rejected the API key (HTTP {exc.status_code})")

    def _unreachable(self, exc: openai.APIConnectionError) -> str:
        cause = exc.__cause__ or exc
        return f"cannot reach the LLM endpoint {self.base_url} ({type(cause).__name__}); check --base-url"

    async def aclose(self) -> None:
        await self._client.close()


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") or inner.get("detail") if isinstance(inner, dict) else inner
        if message:
            return str(message).splitlines()[0][:300]
    return str(exc).splitlines()[0][:300]


def _mentions_format(exc: openai.APIStatusError) -> bool:
    text = f"{exc} {exc.body}".lower()
    return "response_format" in text or "json_schema" in text


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# --- the response cache ----------------------------------------------------------------------


class ResponseCache:
    """Answers already paid for, keyed by (messages, LLM model, parameters), in a SQLite file.

    A re-run, or a run against another database, sends nothing it has sent before."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS response (key TEXT PRIMARY KEY, text TEXT NOT NULL,"
            " tokens_in INTEGER, tokens_out INTEGER, latency_s REAL, created_at REAL)"
        )

    @staticmethod
    def key(messages: Messages, model: str, params: GenerationParams) -> str:
        blob = json.dumps({"m": messages, "model": model, "p": params.model_dump()}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Completion | None:
        row = self._db.execute(
            "SELECT text, tokens_in, tokens_out, latency_s FROM response WHERE key = ?", (key,)
        ).fetchone()
        return Completion(row[0], row[1] or 0, row[2] or 0, row[3] or 0.0) if row else None

    def put(self, key: str, completion: Completion) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO response VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                completion.text,
                completion.tokens_in,
                completion.tokens_out,
                completion.latency_s,
                time.time(),
            ),
        )

    def close(self) -> None:
        self._db.close()


# --- parsing -----------------------------------------------------------------------------------


def extract_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (answers often wrap it in prose or a code fence)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def parse_description(text: str) -> tuple[HeadDescription | None, str | None]:
    """``(description, None)`` or ``(None, why it is not one)``."""
    obj = extract_json(text)
    if obj is None:
        return None, "the answer contains no JSON object"
    try:
        return HeadDescription.model_validate(obj), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}" for e in exc.errors()[:5]
        )
        return None, f"the JSON does not match the schema ({problems})"


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
        hinted = _retry_after(exc)
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
        for attempt in range(self.retry.max_retries + 1):
            async with self._slots:
                calls += 1
                self.usage.llm_calls += 1
                try:
                    completion = await self.backend.complete(messages, params)
                except Exception as exc:
                    if not _retryable(exc) or attempt == self.retry.max_retries:
                        raise
                    failure = exc
                else:
                    break
            self.usage.retries += 1
            await asyncio.sleep(self.retry.delay(attempt, failure))  # outside the slot
        self.usage.tokens_in += completion.tokens_in
        self.usage.tokens_out += completion.tokens_out
        if self.cache is not None:
            self.cache.put(key, completion)
        return completion, calls


@dataclass
class Describer(CachedCaller):
    """Turns rendered prompts into validated descriptions with bounded concurrency."""

    async def describe(self, prompt: str) -> DescribeResult:
        """Ask once; on an unusable answer ask once more: with the problem stated, or, when the
        answer was cut off at the length limit, afresh asking for a shorter one."""
        from describer.llm.answer import CATEGORIES

        messages: Messages = [{"role": "user", "content": prompt}]
        first, calls = await self.complete(messages)
        description, error = parse_description(first.text)
        total = [first]
        if description is None:
            # A cached answer does not carry finish_reason; its token count tells.
            if first.truncated or first.tokens_out >= self.params.max_tokens:
                error = (
                    f"the answer was cut off at the length limit ({self.params.max_tokens} tokens): {error}"
                )
                repair = [{"role": "user", "content": prompt + SHORTER}]
                params = self.params.model_copy(
                    update={"temperature": max(self.params.temperature, RETRY_TEMPERATURE)}
                )
            else:
                params = None
                repair = messages + [
                    {"role": "assistant", "content": first.text},
                    {"role": "user", "content": REPAIR.format(error=error, categories=", ".join(CATEGORIES))},
                ]
            second, more = await self.complete(repair, params)
            calls += more
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
        )


def describe_error(exc: BaseException) -> str:
    """One line for a request that failed for good (after retries)."""
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {_detail(exc)}"
    if isinstance(exc, openai.APIConnectionError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def fatal(exc: BaseException) -> bool:
    """Errors that would fail every head the same way: stop the run instead of recording them."""
    return isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError))


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
