"""What an LLM must answer about a head, validated: LLM text is untrusted input."""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from store.labels import CATEGORIES, CATEGORY_MEANINGS

Category = Literal[CATEGORIES]  # type: ignore[valid-type]

_SENTENCE = 600
"""Longest accepted sentence field, in characters; longer answers are rambling, not a sentence."""


class HeadDescription(BaseModel):
    """One head described in the fields of the MAPS paper's prompt, plus a category."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reasoning: str = Field("", max_length=2000)
    """What the LLM noticed before answering (the small schema of a local model leaves it out)."""
    inputs: str = Field(min_length=1, max_length=_SENTENCE)
    """One sentence on the input tokens."""
    pattern: str = Field(min_length=1, max_length=_SENTENCE)
    """One sentence on the observed mapping (``Unclear`` when there is none)."""
    unclear: bool
    """The LLM found no consistent pattern."""
    category: Category
    """Which stage of the attention-head survey the head serves (``store.labels.CATEGORIES``)."""
    tags: list[str] = Field(default_factory=list, max_length=10)
    """Free keywords, lower-cased and deduplicated."""

    @field_validator("category", mode="before")
    @classmethod
    def _normalise_category(cls, value: object) -> object:
        # "In-context identification" and "in context identification" mean the listed name.
        if isinstance(value, str):
            return value.strip().lower().replace("-", "_").replace(" ", "_")
        return value

    @field_validator("tags")
    @classmethod
    def _clean_tags(cls, tags: list[str]) -> list[str]:
        cleaned = [t.strip().lower()[:50] for t in tags if t and t.strip()]
        return list(dict.fromkeys(cleaned))

    @model_validator(mode="after")
    def _consistent(self) -> HeadDescription:
        # "unclear" is one judgement, stated twice: an unclear head has no category to serve,
        # and the unclear category means no pattern was found.
        if self.unclear or self.category == "unclear":
            self.unclear, self.category = True, "unclear"
        return self

    @property
    def status(self) -> str:
        return "unclear" if self.unclear or self.category == "unclear" else "ok"


def response_json_schema() -> dict[str, Any]:
    """The JSON schema sent as ``response_format``: strict-mode compatible (every property
    required, no extra properties), so OpenAI's structured outputs accept it."""
    schema = copy.deepcopy(HeadDescription.model_json_schema())
    schema["required"] = list(schema["properties"])
    schema["additionalProperties"] = False
    for prop in schema["properties"].values():
        prop.pop("default", None)
        for key in ("maxLength", "minLength", "maxItems"):  # not supported by strict mode
            prop.pop(key, None)
    return schema


SMALL_LIMITS = {"inputs": (3, 200), "pattern": (3, 240)}
"""(minLength, maxLength) of the small schema's sentences: bounded, or a grammar lets a small
model list tokens until the token limit (measured: 2 of 24 valid answers without bounds)."""


def small_json_schema() -> dict[str, Any]:
    """The schema a small local model answers in: no ``reasoning``, bounded strings, at most
    three short tags; for grammar-constrained decoding (``describer.llm.llamacpp``)."""
    properties: dict[str, Any] = {}
    for name, (low, high) in SMALL_LIMITS.items():
        properties[name] = {"type": "string", "minLength": low, "maxLength": high}
    properties["unclear"] = {"type": "boolean"}
    properties["category"] = {"type": "string", "enum": list(CATEGORIES)}
    properties["tags"] = {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 24},
        "maxItems": 3,
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


__all__ = ["CATEGORIES", "CATEGORY_MEANINGS", "HeadDescription", "response_json_schema", "small_json_schema"]


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
