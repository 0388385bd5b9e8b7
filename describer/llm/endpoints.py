"""The two real backends' entries in the registry, and ``connect``, which picks one: an
OpenAI-compatible endpoint when a base URL is given, else the local model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from describer.errors import HeadmapsError
from describer.llm.base import Endpoint, GenerationParams, LLMBackend, backend_connector, register_backend
from describer.llm.local import LOCAL_MODEL, WEAK_MODEL_NOTE, serve_local
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
    with serve_local() as server:
        endpoint = Endpoint(
            server.base_url, server.model_path, LOCAL_MODEL, "local:transformers-serve", local=True
        )
        # A CPU-bound local model can take minutes per answer when the machine is busy;
        # timing out would only queue the same work again behind the first try.
        backend = OpenAIBackend(
            endpoint.base_url, endpoint.request_model, api_key_from_env(), timeout_s=900.0
        )
        backend.host = endpoint.host
        yield endpoint, backend


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
    # transformers serve ignores response_format, so the local model answers in text. Its usable
    # answers are 100-180 tokens; the longer ones are token lists running on, and each token
    # costs a quarter of a second on 2 cores.
    return GenerationParams(temperature=0.0, max_tokens=300 if not local else 180, structured=not local)
