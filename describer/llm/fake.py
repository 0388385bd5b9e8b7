"""A fake LLM, registered as ``fake`` like the real backends: canned answers, no network.

For tests and dry runs of a prompt. Without canned answers it replies with a valid description
chosen deterministically by the prompt; ``enqueue`` queues exact answers, and ``history``
records every request."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator

from describer.llm.answer import CATEGORIES
from describer.llm.base import Completion, Endpoint, GenerationParams, LLMBackend, Messages, register_backend

FAKE_MODEL = "fake-llm"


def default_answer(prompt: str) -> str:
    """A valid description, its category chosen by the prompt's hash."""
    category = CATEGORIES[int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % len(CATEGORIES)]
    unclear = category == "unclear"
    return json.dumps(
        {
            "reasoning": "The outputs repeat the inputs.",
            "inputs": "Common English words.",
            "pattern": "Unclear" if unclear else "Each word maps to itself.",
            "unclear": unclear,
            "category": category,
            "tags": ["copying"],
        }
    )


class FakeBackend(LLMBackend):
    """Answers from a queue, else ``default_answer`` of the last message."""

    def __init__(self, model: str = FAKE_MODEL) -> None:
        self.model = model
        self.host = "fake"
        self.queue: list[Completion] = []
        self.history: list[tuple[Messages, GenerationParams]] = []

    def enqueue(self, text: str, *, tokens_out: int = 40, truncated: bool = False) -> None:
        self.queue.append(Completion(text, tokens_in=100, tokens_out=tokens_out, truncated=truncated))

    async def complete(self, messages: Messages, params: GenerationParams) -> Completion:
        self.history.append((messages, params))
        if self.queue:
            return self.queue.pop(0)
        return Completion(default_answer(messages[-1]["content"]), tokens_in=100, tokens_out=40)


@register_backend("fake")
@contextlib.contextmanager
def connect_fake(base_url: str | None, llm_model: str | None) -> Iterator[tuple[Endpoint, LLMBackend]]:
    model = llm_model or FAKE_MODEL
    yield Endpoint(base_url or "fake://", model, model, "fake"), FakeBackend(model)
