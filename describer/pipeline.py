"""The describe job: every head's stored mappings, rendered into a prompt, described by an LLM,
stored as each answer arrives.

Resumable by construction: a head is skipped when the store holds a description of it by the
same prompt (template hash) and LLM, each description is committed on its own as soon as it is
parsed, and answers already paid for come from the response cache. Ctrl-C or ``kill -9`` loses
at most the heads in flight; re-running the same command does only what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from describer.errors import HeadmapsError
from describer.llm.client import Describer, DescribeResult, GenerationParams, describe_error, estimated_cost, fatal
from prompts import Template
from store.labels import CATEGORY_MEANINGS

if TYPE_CHECKING:
    from describer.maps.jobs import AnalysisResult
    from describer.maps.loading import LoadedModel
    from store import Store
    from store.records import HeadView

Warn = Callable[[str], None]
TOP_OPERATIONS = 5
"""Operation scores shown to the LLM by the evidence prompt, best first."""
MIN_SCORE = 0.05
"""Operation scores (relation or suppression) below this are not shown."""


class DescribeSummary(BaseModel):
    """What ``headmaps describe --json`` prints. heads/described/unclear/failed count the whole
    model in the store for this prompt and LLM; the rest count this run."""

    model: str
    heads: int
    described: int
    unclear: int
    failed: int
    llm_calls: int
    tokens_in: int
    tokens_out: int
    seconds: float


@dataclass
class RunStats:
    """This run's progress, passed to the progress callback after every head."""

    total: int
    """Heads this run set out to describe."""
    done: int = 0
    failed: int = 0
    unclear: int = 0
    errors: int = 0
    """Heads whose requests failed for good (not stored; the next run retries them)."""
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float | None = 0.0
    started: float = field(default_factory=time.monotonic)
    last_error: str | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


ProgressFn = Callable[[RunStats], None]


# --- heads -------------------------------------------------------------------------------------

_HEAD = re.compile(r"^\s*(\d+)\.(\d+)\s*$")


def parse_heads(spec: str) -> list[tuple[int, int]] | None:
    """``all`` → None; ``"3.1,10.2"`` → ``[(3, 1), (10, 2)]``."""
    if spec.strip().lower() == "all":
        return None
    heads = []
    for part in spec.split(","):
        match = _HEAD.match(part)
        if not match:
            raise HeadmapsError(f"--heads: {part.strip()!r} is not LAYER.HEAD (e.g. 3.1); use all or L.H,L.H")
        heads.append((int(match[1]), int(match[2])))
    return list(dict.fromkeys(heads))


def select_heads(
    wanted: Sequence[tuple[int, int]] | None, n_layers: int, n_heads: int, model: str
) -> list[tuple[int, int]]:
    if wanted is None:
        return [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    for layer, head in wanted:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise HeadmapsError(
                f"--heads: {layer}.{head} is not a head of {model} (layers 0..{n_layers - 1}, heads 0..{n_heads - 1})"
            )
    return list(wanted)


# --- evidence ----------------------------------------------------------------------------------


def evidence(
    view: HeadView, n_layers: int, n_heads: int, top_operations: int = TOP_OPERATIONS
) -> dict[str, Any]:
    """What a template may use, all read from the store."""
    if not view.salient:
        raise HeadmapsError(f"{view.model} head {view.layer}.{view.head} has no stored salient mappings")
    # Scores near zero say nothing and crowd the prompt; the template says when none is left.
    strong = [o for o in view.operations if max(o.relation, o.suppression) >= MIN_SCORE]
    return {
        "model": view.model,
        "layer": view.layer,
        "head": view.head,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "salient": [
            {
                "token": s.token,
                "amplification": s.amplification,
                "mappings": [{"token": m.token, "logit": m.logit} for m in s.mappings],
            }
            for s in view.salient
        ],
        "operations": [
            {
                "name": o.name,
                "category": o.category,
                "score": o.relation,
                "suppression": o.suppression,
                "k": o.k,
            }
            for o in strong[:top_operations]
        ],
        "categories": dict(CATEGORY_MEANINGS),
    }


# --- the analysis, when the store lacks it ---------------------------------------------------------


def store_analysis(store: Store, loaded: LoadedModel, result: AnalysisResult) -> int:
    """Save an ``analyze_model`` result with its model and operation definitions."""
    from describer.maps.analysis import AnalysisSettings
    from describer.maps.jobs import model_info
    from describer.maps.operations import builtin_operations
    from store.records import OperationIn

    info = model_info(loaded)
    settings = AnalysisSettings(
        **{k: v for k, v in result.settings.items() if k in AnalysisSettings.model_fields}
    )
    builtins = builtin_operations()
    operations = [
        OperationIn(name=n, category=builtins[n].category, pairs=list(builtins[n].pairs))
        for n in result.operations
        if n in builtins
    ]
    return store.save_analysis(info, result, settings_key=settings.key(), operations=operations)


def ensure_analysis(
    store: Store, model: str | None, *, device: str = "auto", progress: Any = None, warn: Warn = print
) -> str:
    """The stored model name, analysing and storing the model first if the store lacks it."""
    from describer.maps.loading import resolve

    name = resolve(model).name
    with contextlib.suppress(HeadmapsError):
        summary = store.get_model(name)
        if summary.heads >= summary.n_layers * summary.n_heads:
            return name
    from describer.maps.jobs import analyze_model, pick_device
    from describer.maps.loading import load_model
    from describer.maps.operations import builtin_operations

    loaded = load_model(model, device=pick_device(device))
    result = analyze_model(
        model, list(builtin_operations().values()), device=device, progress=progress, warn=warn, loaded=loaded
    )
    store_analysis(store, loaded, result)
    return name


# --- describing ------------------------------------------------------------------------------------


@dataclass
class DescribeJob:
    """Describe the chosen heads of one stored model with one template and one LLM."""

    store: Store
    model: str
    template: Template
    describer: Describer
    llm_host: str
    heads: list[tuple[int, int]] | None = None
    """None: every head."""
    limit: int | None = None
    local: bool = False
    """The LLM is the local default (its cost is 0)."""
    top_operations: int = TOP_OPERATIONS

    def todo(self) -> list[tuple[int, int]]:
        """Heads still to describe, in model order, at most ``limit``. Failed descriptions count
        as done: their raw answer is stored, and asking again would repeat a cached answer."""
        summary = self.store.get_model(self.model)
        chosen = select_heads(self.heads, summary.n_layers, summary.n_heads, self.model)
        done = self.store.described_heads(
            self.model, self.template.sha256, self.describer.label, include_failed=True
        )
        missing = [h for h in chosen if h not in done]
        return missing[: self.limit] if self.limit is not None else missing

    async def run(self, progress: ProgressFn | None = None) -> RunStats:
        summary = self.store.get_model(self.model)
        todo = self.todo()
        stats = RunStats(total=len(todo))
        run_id = self.store.start_run(
            "describe",
            self.model,
            {
                "prompt": self.template.name,
                "prompt_sha": self.template.sha256,
                "llm_model": self.describer.label,
                "llm_host": self.llm_host,
                "params": self.describer.params.model_dump(),
                "concurrency": self.describer.concurrency,
                "heads": len(todo),
            },
        )
        queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        for head in todo:
            queue.put_nowait(head)
        status = "interrupted"
        try:
            workers = [
                asyncio.create_task(
                    self._worker(queue, summary.n_layers, summary.n_heads, run_id, stats, progress)
                )
                for _ in range(min(self.describer.concurrency, len(todo)) or 1)
            ]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
            status = "done"
        except HeadmapsError as exc:
            status = "failed"
            self._finish(run_id, status, stats, str(exc))
            raise
        finally:
            if status != "failed":
                self._finish(run_id, status, stats, stats.last_error if status == "done" else None)
        return stats

    def _finish(self, run_id: int, status: str, stats: RunStats, error: str | None) -> None:
        counts = {
            "heads": stats.total,
            "done": stats.done,
            "failed": stats.failed,
            "unclear": stats.unclear,
            "errors": stats.errors,
            "llm_calls": stats.llm_calls,
            "tokens_in": stats.tokens_in,
            "tokens_out": stats.tokens_out,
        }
        self.store.finish_run(run_id, status, counts, error)

    async def _worker(
        self,
        queue: asyncio.Queue[tuple[int, int]],
        n_layers: int,
        n_heads: int,
        run_id: int,
        stats: RunStats,
        progress: ProgressFn | None,
    ) -> None:
        while True:
            try:
                layer, head = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            view = self.store.get_head(self.model, layer, head)
            rendered = self.template.render(**evidence(view, n_layers, n_heads, self.top_operations))
            before = self.describer.usage.llm_calls
            try:
                result = await self.describer.describe(rendered.text)
            except Exception as exc:
                stats.llm_calls += self.describer.usage.llm_calls - before
                if fatal(exc):
                    raise HeadmapsError(f"the LLM endpoint refused the run ({describe_error(exc)})") from exc
                stats.errors += 1
                stats.last_error = f"{layer}.{head}: {describe_error(exc)}"
                if progress:
                    progress(stats)
                continue
            self._store(layer, head, view.analysis_id, run_id, rendered, result)
            stats.done += 1
            stats.failed += result.status == "failed"
            stats.unclear += result.status == "unclear"
            stats.llm_calls += result.llm_calls
            if result.llm_calls:
                stats.tokens_in += result.tokens_in
                stats.tokens_out += result.tokens_out
            stats.cost = estimated_cost(self.describer.label, stats.tokens_in, stats.tokens_out, self.local)
            if progress:
                progress(stats)

    def _store(
        self,
        layer: int,
        head: int,
        analysis_id: int | None,
        run_id: int,
        rendered: Any,
        result: DescribeResult,
    ) -> None:
        from store.records import DescriptionIn

        d = result.description
        self.store.add_description(
            DescriptionIn(
                model=self.model,
                layer=layer,
                head=head,
                prompt_name=rendered.name,
                prompt_sha=rendered.sha256,
                rendered_prompt=rendered.text,
                llm_model=self.describer.label,
                llm_host=self.llm_host,
                params=self.describer.params.model_dump(),
                raw_response=result.raw,
                reasoning=d.reasoning if d else None,
                inputs=d.inputs if d else None,
                pattern=d.pattern if d else None,
                unclear=d.unclear if d else False,
                category=d.category if d else None,
                tags=d.tags if d else [],
                status=result.status,
                tokens_in=result.tokens_in,
                tokens_out=result.tokens_out,
                latency_s=result.latency_s,
                run_id=run_id,
                analysis_id=analysis_id,
            )
        )

    def summary(self, stats: RunStats) -> DescribeSummary:
        counts = self.store.description_counts(self.model, self.template.sha256, self.describer.label)
        return DescribeSummary(
            model=self.model,
            heads=counts["heads"],
            described=counts["described"],
            unclear=counts["unclear"],
            failed=counts["failed"],
            llm_calls=stats.llm_calls,
            tokens_in=stats.tokens_in,
            tokens_out=stats.tokens_out,
            seconds=round(stats.elapsed, 3),
        )


# --- endpoints -------------------------------------------------------------------------------------


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


@contextlib.contextmanager
def open_endpoint(base_url: str | None, llm_model: str | None) -> Iterator[Endpoint]:
    """The configured endpoint, or the local default server started for the duration."""
    from describer.llm.client import host_of
    from describer.llm.local import LOCAL_MODEL, serve_local

    if base_url:
        if not llm_model:
            raise HeadmapsError("--base-url needs --llm-model (the model name the endpoint serves)")
        yield Endpoint(base_url, llm_model, llm_model, host_of(base_url))
        return
    if llm_model and llm_model != LOCAL_MODEL:
        raise HeadmapsError(
            f"--llm-model {llm_model} needs --base-url (without one headmaps runs the local {LOCAL_MODEL})"
        )
    with serve_local() as server:
        yield Endpoint(
            server.base_url, server.model_path, LOCAL_MODEL, "local:transformers-serve", local=True
        )


def default_params(local: bool) -> GenerationParams:
    # transformers serve ignores response_format, so the local model answers in text. Its usable
    # answers are 100-180 tokens; the longer ones are token lists running on, and each token
    # costs a quarter of a second on 2 cores.
    return GenerationParams(temperature=0.0, max_tokens=300 if not local else 180, structured=not local)
