"""The two real backends' entries in the registry, and ``connect``, which picks one: an
OpenAI-compatible endpoint when a base URL is given, else the local model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from describer.errors import HeadmapsError
from describer.llm.base import Endpoint, GenerationParams, LLMBackend, backend_connector, register_backend
from describer.llm.cache import ResponseCache
from describer.llm.caller import Describer
from describer.llm.llamacpp import LlamaCppBackend, load_runtime
from describer.llm.local import LOCAL_MODEL, WEAK_MODEL_NOTE, local_mode, local_model_file
from describer.llm.openai_api import OpenAIBackend, api_key_from_env, host_of

Warn = Callable[[str], None]


@register_backend("openai")
@contextlib.contextmanager
def connect_openai(base_url: str | None, llm_model: str | None) -> Iterator[tuple[Endpoint, LLMBackend]]:
    if not base_url:
        raise HeadmapsError("the openai backend needs --base-url")
    if not llm_model:
        raise HeadmapsError("--base-url needs --llm-model (the model name the endpoint serves)")
    endpoint = Endpoint(base_url, llm_model, llm_model, host_of(base_url))
    yield endpoint, OpenAIBackend(base_url, llm_model, api_key_from_env(), timeout_s=120.0)


@register_backend("local")
@contextlib.contextmanager
def connect_local(base_url: str | None, llm_model: str | None) -> Iterator[tuple[Endpoint, LLMBackend]]:
    if llm_model and llm_model != LOCAL_MODEL:
        raise HeadmapsError(
            f"--llm-model {llm_model} needs --base-url (without one headmaps runs the local {LOCAL_MODEL})"
        )
    load_runtime()  # a missing runtime is one line saying how to install it, before any work
    backend = LlamaCppBackend(local_model_file(), LOCAL_MODEL, mode=local_mode())  # type: ignore[arg-type]
    endpoint = Endpoint(str(backend.model_path), LOCAL_MODEL, LOCAL_MODEL, backend.host, local=True)
    try:
        yield endpoint, backend
    finally:
        backend.close()


@contextlib.contextmanager
def connect(
    base_url: str | None, llm_model: str | None, *, backend: str | None = None, warn: Warn | None = None
) -> Iterator[tuple[Endpoint, LLMBackend]]:
    """The endpoint and a backend for it, by registry name; by default ``openai`` when a base URL
    is given, else ``local`` (its server started and stopped around the block). Says so, through
    ``warn``, when the answers will come from the weak local model."""
    name = backend or ("openai" if base_url else "local")
    with backend_connector(name)(base_url, llm_model) as (endpoint, llm):
        if endpoint.local and warn is not None:
            warn(WEAK_MODEL_NOTE)
        yield endpoint, llm


def default_params(local: bool) -> GenerationParams:
    # The local backend keeps its answer in the schema itself (guided fields or a grammar, each
    # bounded), so max_tokens only caps a free-text request; 160 is twice the longest guided answer.
    return GenerationParams(temperature=0.0, max_tokens=300 if not local else 160, structured=True)


def describer_for(
    endpoint: Endpoint, backend: LLMBackend, cache: ResponseCache | None, concurrency: int | None = None
) -> Describer:
    """The describer both jobs use: the endpoint's default parameters and concurrency, its label
    in cache keys and records."""
    return Describer(
        backend,
        params=default_params(endpoint.local),
        concurrency=concurrency or endpoint.default_concurrency,
        cache=cache,
        model_label=endpoint.label,
    )
