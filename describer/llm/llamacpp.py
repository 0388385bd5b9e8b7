"""The offline describer: llama.cpp (through ``llama-cpp-python``) running the local GGUF as
shipped, in this process.

Why in-process and not a server: there is nothing to start, wait for, or leave behind, and the
KV cache stays warm between heads (llama.cpp reuses the longest common token prefix of the
previous request, so the fixed instructions and worked examples at the head of every prompt
are evaluated once per run, not once per head).

Two ways of getting an answer in the schema, chosen by ``mode``:

``guided`` (the default; see ``benchmarks/bench_describer.py`` for the comparison)
    We write the JSON scaffold ourselves. Each free-text field is generated on its own with its
    own token cap and stops at the closing quote, so no field can run away; ``unclear`` and
    ``category`` are chosen by the model among the allowed values only (a one-line grammar over
    a few tokens), and an unclear head gets category ``unclear`` by construction.
``grammar``
    The whole answer is sampled under a grammar made from the answer's JSON schema, with
    bounded string lengths and no ``reasoning`` field (a 0.5B model fills free reasoning with
    token lists). Grammar sampling in llama-cpp-python costs ~20 ms a token on top of decoding.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from describer.errors import HeadmapsError
from describer.llm.answer import CATEGORIES, small_json_schema
from describer.llm.base import Completion, GenerationParams, LLMBackend, LLMError, Messages

Mode = Literal["guided", "grammar"]
MODES: tuple[Mode, ...] = ("guided", "grammar")

INSTALL_HINT = (
    "the local LLM runtime llama-cpp-python is not installed; install it with "
    "`bash .ci/llama-cpp.sh` from the headmaps checkout (builds a portable wheel once and caches it), "
    "or point at any OpenAI-compatible endpoint with --base-url"
)


@dataclass(frozen=True)
class Field:
    """One field of the guided scaffold."""

    name: str
    kind: Literal["text", "bool", "choice", "tags"]
    max_tokens: int = 0


GUIDED_FIELDS: tuple[Field, ...] = (
    Field("unclear", "bool"),
    Field("inputs", "text", 40),
    Field("pattern", "text", 56),
    Field("category", "choice"),
    Field("tags", "tags", 24),
)
"""The small schema, in the order the prompt's worked examples show it. ``unclear`` comes first:
judged right after the facts, before the model has written a pattern it would then defend.
``reasoning`` is left out: the prompt states the facts, so there is nothing for a small model
to reason through."""

REPEAT_PENALTY = 1.1
"""Measured in the issue that asked for this backend: 23 of 24 usable answers with it, 16 without."""


def load_runtime() -> Any:
    """The ``llama_cpp`` module, or one line saying how to install it."""
    # OpenMP's default spin-wait starves decoding when anything else runs on the machine
    # (1-6 tokens/s instead of ~22, measured), so threads sleep instead of spinning. Not when
    # torch is loaded: llama.cpp then shares torch's OpenMP runtime, which has read its policy
    # already, and passive waiting before torch loads slows the analysis by a third (measured).
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    try:
        import llama_cpp  # heavy: a compiled library, loaded only when describing offline
    except ImportError as exc:
        raise LLMError(INSTALL_HINT) from exc
    except OSError as exc:  # the shared library is there but does not load on this CPU or libc
        raise LLMError(f"{INSTALL_HINT} (the installed one does not load: {exc})") from exc
    return llama_cpp


class LlamaCppBackend(LLMBackend):
    """A GGUF model in this process; one request at a time (llama.cpp uses every core)."""

    def __init__(
        self,
        model_path: Path,
        model: str,
        *,
        mode: Mode = "guided",
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 0,
    ) -> None:
        if mode not in MODES:
            raise HeadmapsError(f"unknown local decoding mode {mode!r}; known: {', '.join(MODES)}")
        self.model_path = Path(model_path)
        self.model = model
        self.host = f"local:llama.cpp/{mode}"
        self.mode = mode
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.seed = seed
        self._llm: Any = None
        self._runtime: Any = None
        self._formatter: Any = None
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model (once); raises ``LLMError`` with an install hint when it cannot."""
        if self._llm is not None:
            return
        runtime = load_runtime()
        if not self.model_path.is_file():
            raise LLMError(f"the local model file {self.model_path} does not exist")
        try:
            self._llm = runtime.Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                n_batch=512,
                seed=self.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMError(f"llama.cpp cannot load {self.model_path}: {exc}") from exc
        self._runtime = runtime
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # heavy: part of llama_cpp

        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise LLMError(f"{self.model_path} has no chat template in its metadata")
        llm = self._llm
        eos = llm.token_eos()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(llm.token_bos()) if llm.token_bos() != -1 else "",
            stop_token_ids=[eos],
        )

    def check(self) -> None:
        """What can be told without loading: the runtime imports and the file is a GGUF."""
        self._runtime = load_runtime()
        try:
            with self.model_path.open("rb") as f:
                magic = f.read(4)
        except OSError as exc:
            raise LLMError(
                f"the local model file {self.model_path} does not exist or cannot be read ({exc})"
            ) from exc
        if magic != b"GGUF":
            raise LLMError(f"the local model file {self.model_path} is not a GGUF file")

    async def preflight(self) -> None:
        # The model itself loads at the first request: after the analysis, so the two are never
        # in memory together (the main job's peak stays that of the analysis).
        await asyncio.to_thread(self._locked, self.check)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._locked, self.close)

    def close(self) -> None:
        """Free the model (idempotent); a later request loads it again."""
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            return fn(*args)

    # --- requests ----------------------------------------------------------------------------

    async def complete(self, messages: Messages, params: GenerationParams) -> Completion:
        return await asyncio.to_thread(self._locked, self._complete, messages, params)

    def _complete(self, messages: Messages, params: GenerationParams) -> Completion:
        self.load()
        start = time.perf_counter()
        prompt = self._formatter(messages=messages).prompt
        if not params.structured:
            text, n_in, n_out, truncated = self._generate(prompt, params, params.max_tokens, stop=None)
        elif self.mode == "grammar":
            text, n_in, n_out, truncated = self._generate(
                prompt, params, params.max_tokens, stop=None, grammar=self._grammar("schema")
            )
        else:
            text, n_in, n_out, truncated = self._guided(prompt, params)
        return Completion(text, n_in, n_out, time.perf_counter() - start, truncated)

    def _tokens(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _generate(
        self,
        prompt: str,
        params: GenerationParams,
        max_tokens: int,
        *,
        stop: list[str] | None,
        grammar: Any = None,
    ) -> tuple[str, int, int, bool]:
        tokens = self._tokens(prompt)
        room = self.n_ctx - len(tokens) - 1
        if room < 1:
            raise LLMError(f"the prompt has {len(tokens)} tokens; the local model's context is {self.n_ctx}")
        out = self._llm.create_completion(
            tokens,
            max_tokens=min(max_tokens, room),
            temperature=params.temperature,
            top_k=40,
            top_p=0.95,
            min_p=0.05,
            repeat_penalty=REPEAT_PENALTY,
            stop=stop or [],
            grammar=grammar,
            seed=self.seed,
        )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return (
            choice["text"],
            int(usage.get("prompt_tokens", len(tokens))),
            int(usage.get("completion_tokens", 0)),
            choice.get("finish_reason") == "length",
        )

    def _grammar(self, name: str, choices: tuple[str, ...] = ()) -> Any:
        if name not in self._grammars:
            grammar_cls = self._runtime.LlamaGrammar
            if name == "schema":
                self._grammars[name] = grammar_cls.from_json_schema(
                    json.dumps(small_json_schema()), verbose=False
                )
            else:
                rule = " | ".join(json.dumps(c) for c in choices)
                self._grammars[name] = grammar_cls.from_string(f'root ::= " "? ({rule})', verbose=False)
        return self._grammars[name]

    def _guided(self, prompt: str, params: GenerationParams) -> tuple[str, int, int, bool]:
        """The answer written field by field into our own JSON scaffold."""
        answer: dict[str, Any] = {}
        text = ""
        n_in = n_out = 0
        for i, field in enumerate(GUIDED_FIELDS):
            text += ("{" if i == 0 else ", ") + json.dumps(field.name) + ":"
            if field.kind == "text":
                value, used_in, used_out = self._text_field(prompt + text + ' "', params, field.max_tokens)
                answer[field.name] = value
            elif field.kind == "bool":
                # No space after the colon: " true" is one token, and a prompt ending in a bare
                # space would put the model off its usual tokenization.
                value, used_in, used_out = self._choice(prompt + text, params, "bool", ("true", "false"))
                answer[field.name] = value == "true"
            elif field.kind == "choice":
                if answer.get("unclear"):
                    value, used_in, used_out = "unclear", 0, 0  # consistent by construction
                else:
                    options = tuple(c for c in CATEGORIES if c != "unclear")
                    value, used_in, used_out = self._choice(prompt + text + ' "', params, "category", options)
                answer[field.name] = value
            else:
                value, used_in, used_out = self._tags(prompt + text + " [", params, field.max_tokens)
                answer[field.name] = value
            text += " " + json.dumps(answer[field.name], ensure_ascii=False)
            n_in = n_in or used_in  # the prompt proper; later calls only add our scaffold
            n_out += used_out
        return json.dumps(answer, ensure_ascii=False), n_in, n_out, False

    def _text_field(self, prefix: str, params: GenerationParams, cap: int) -> tuple[str, int, int]:
        raw, n_in, n_out, _ = self._generate(prefix, params, cap, stop=['"', "\n"])
        value = " ".join(raw.replace("\\", "").split()).strip()
        if not value:  # an empty field fails the schema; "Unclear" is what an empty answer means
            value = "Unclear"
        return value, n_in, n_out

    def _choice(
        self, prefix: str, params: GenerationParams, name: str, options: tuple[str, ...]
    ) -> tuple[str, int, int]:
        greedy = params.model_copy(update={"temperature": 0.0})  # the likeliest allowed option
        raw, n_in, n_out, _ = self._generate(
            prefix, greedy, 12, stop=None, grammar=self._grammar(name, options)
        )
        value = raw.strip()
        return (value if value in options else options[-1]), n_in, n_out

    def _tags(self, prefix: str, params: GenerationParams, cap: int) -> tuple[list[str], int, int]:
        raw, n_in, n_out, _ = self._generate(prefix, params, cap, stop=["]", "\n"])
        tags = [t.strip().strip('"').strip() for t in raw.split(",")]
        return [t for t in tags if t and len(t) <= 30][:3], n_in, n_out
