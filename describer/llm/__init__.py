"""LLM backends behind one interface (``LLMBackend``), chosen by name from a registry
(``openai``, ``local``, ``fake``), with the answer schema, the response cache and the caller
that adds retries, bounded concurrency and validation."""

from describer.llm.answer import (
    CATEGORIES,
    HeadDescription,
    extract_json,
    parse_description,
    response_json_schema,
)
from describer.llm.base import (
    Completion,
    Endpoint,
    GenerationParams,
    LLMBackend,
    LLMError,
    Messages,
    backend_names,
    register_backend,
)
from describer.llm.cache import ResponseCache
from describer.llm.caller import CachedCaller, Describer, DescribeResult, RetryPolicy, estimated_cost
from describer.llm.endpoints import connect, default_params, describer_for
from describer.llm.fake import FakeBackend
from describer.llm.openai_api import OpenAIBackend, api_key_from_env, describe_error, fatal, host_of

__all__ = [
    "CATEGORIES",
    "CachedCaller",
    "Completion",
    "DescribeResult",
    "Describer",
    "Endpoint",
    "FakeBackend",
    "GenerationParams",
    "HeadDescription",
    "LLMBackend",
    "LLMError",
    "Messages",
    "OpenAIBackend",
    "ResponseCache",
    "RetryPolicy",
    "api_key_from_env",
    "backend_names",
    "connect",
    "default_params",
    "describe_error",
    "describer_for",
    "estimated_cost",
    "extract_json",
    "fatal",
    "host_of",
    "parse_description",
    "register_backend",
    "response_json_schema",
]
