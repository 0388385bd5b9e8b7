"""Any OpenAI-compatible chat-completions endpoint through the async ``openai`` SDK: OpenAI
itself, vLLM, Ollama, llama.cpp's server or ``transformers serve``. Tests fake the HTTP layer by
handing the backend an ``httpx2`` client with a mock transport. The API key is held only by the SDK client: it is never part of a
result, a cache key or a message.

``complete`` raises the SDK's exceptions, and the helpers at the end classify them, so the retry
policy in ``describer.llm.caller`` is the same for every backend.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import urlparse

import openai

from describer.llm.answer import response_json_schema
from describer.llm.base import Completion, GenerationParams, LLMBackend, LLMError, Messages

API_KEY_ENVS = ("HEADMAPS_LLM_API_KEY", "OPENAI_API_KEY")
"""Where the API key is read from, first match wins. It is never stored."""

KEYED_HOSTS = ("openai.com", "anthropic.com", "openrouter.ai", "groq.com", "together.xyz", "mistral.ai")
"""Hosts known to need a key: a missing one is reported without sending anything."""


def api_key_from_env() -> str | None:
    for name in API_KEY_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def host_of(base_url: str) -> str:
    parsed = urlparse(base_url)
    return parsed.netloc or base_url


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


def retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def retry_after(exc: BaseException) -> float | None:
    """The server's ``Retry-After`` hint in seconds, if it gave one."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def format_refusal(exc: BaseException) -> bool:
    """HTTP 500 to a request with ``response_format``: what llama-cpp-python's own server answers
    to any json_schema. The caller asks again at once without structured output."""
    return isinstance(exc, openai.APIStatusError) and exc.status_code == 500


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
