"""Asking an LLM for one JSON object: ``Asker`` sends through the describer's ``CachedCaller``
(response cache, retries, bounded concurrency), validates the answer against a schema and a
check, and on failure asks once more, saying why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from describer.llm import CachedCaller, GenerationParams, Messages, extract_json

SCORING_PARAMS = GenerationParams(temperature=0.0, max_tokens=200, structured=False)
"""Short JSON answers; ``structured`` off because the describer's response schema is not ours."""

T = TypeVar("T", bound=BaseModel)

REPAIR = "Your answer could not be used: {error}. Reply again with only the JSON object asked for: {shape}"


@dataclass
class Answer:
    """A validated JSON answer, or why there is none; ``raw`` holds every answer's text."""

    value: Any
    raw: str
    error: str | None
    llm_calls: int


@dataclass
class Asker(CachedCaller):
    """A ``CachedCaller`` that asks for one JSON object and validates it."""

    params: GenerationParams = SCORING_PARAMS

    async def ask_json(self, prompt: str, schema: type[T], check: Any = None, shape: str = "") -> Answer:
        """Ask; parse the first JSON object as ``schema`` (LLM text is untrusted) and ``check``
        it (a callable returning an error or None); on failure ask once more, stating why."""
        messages: Messages = [{"role": "user", "content": prompt}]
        first, calls = await self.complete(messages)
        value, error = _parse(first.text, schema, check)
        if value is not None:
            return Answer(value, first.text, None, calls)
        repair = messages + [
            {"role": "assistant", "content": first.text},
            {"role": "user", "content": REPAIR.format(error=error, shape=shape)},
        ]
        second, more = await self.complete(repair)
        value, second_error = _parse(second.text, schema, check)
        raw = f"{first.text}\n--- repair ---\n{second.text}"
        if value is not None:
            return Answer(value, raw, None, calls + more)
        return Answer(None, raw, f"{error}; after one repair request: {second_error}", calls + more)


def _parse(text: str, schema: type[T], check: Any) -> tuple[T | None, str | None]:
    obj = extract_json(text)
    if obj is None:
        return None, "the answer contains no JSON object"
    try:
        value = schema.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}" for e in exc.errors()[:3]
        )
        return None, f"the JSON does not match ({problems})"
    problem = check(value) if check else None
    return (None, problem) if problem else (value, None)
