"""The one interface every LLM backend implements, what passes through it, and the registry
of backends by name: ``openai`` (any OpenAI-compatible endpoint), ``local`` (the offline model
headmaps serves itself), ``fake`` (canned answers, for tests)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from describer.errors import HeadmapsError

Messages = list[dict[str, str]]


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
    retry policy in ``describer.llm.caller`` is the same for every backend."""

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


@dataclass
class Endpoint:
    """Where the LLM is: a base URL and the model name requests carry, plus what is recorded."""

    base_url: str
    request_model: str
    label: str
    """The LLM model name stored with descriptions and used in cache keys."""
    host: str
    local: bool = False

    @property
    def default_concurrency(self) -> int:
        """Requests in flight when ``--concurrency`` is not given: the local CPU server gains
        nothing from parallel requests (measured), a remote endpoint does."""
        return 1 if self.local else 8


Connect = Callable[[str | None, str | None], AbstractContextManager[tuple[Endpoint, LLMBackend]]]
"""A backend's entry in the registry: ``(base_url, llm_model)`` in, a context manager out that
yields the endpoint and a backend for it, and releases both (a local server too) on exit."""

_BACKENDS: dict[str, Connect] = {}


def register_backend(name: str) -> Callable[[Connect], Connect]:
    """Register ``connect`` under ``name``: ``@register_backend("openai")``."""

    def add(connect: Connect) -> Connect:
        if name in _BACKENDS:
            raise ValueError(f"LLM backend {name!r} is registered twice")
        _BACKENDS[name] = connect
        return connect

    return add


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def backend_connector(name: str) -> Connect:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise HeadmapsError(f"unknown LLM backend {name!r}; known: {', '.join(backend_names())}") from None
