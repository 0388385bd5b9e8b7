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
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from describer.analyze import ensure_analysis
from describer.errors import HeadmapsError, InvalidValue
from describer.evidence import TOP_OPERATIONS
from describer.evidence import head_evidence as evidence
from describer.heads import head_name, parse_head
from describer.llm import (
    Describer,
    DescribeResult,
    Endpoint,
    LLMBackend,
    ResponseCache,
    describe_error,
    describer_for,
    estimated_cost,
    fatal,
)
from prompts import Template
from store import Store
from store.records import DescriptionIn

Warn = Callable[[str], None]


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


def parse_heads(spec: str) -> list[tuple[int, int]] | None:
    """``all`` → None; ``"L3.H1,L10.H2"`` (or ``"3.1,10.2"``) → ``[(3, 1), (10, 2)]``."""
    if spec.strip().lower() == "all":
        return None
    heads = []
    for part in spec.split(","):
        try:
            heads.append(parse_head(part))
        except InvalidValue as exc:
            raise HeadmapsError(f"--heads: {exc}; or all") from None
    return list(dict.fromkeys(heads))


def select_heads(
    wanted: Sequence[tuple[int, int]] | None, n_layers: int, n_heads: int, model: str
) -> list[tuple[int, int]]:
    if wanted is None:
        return [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    for layer, head in wanted:
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise HeadmapsError(
                f"--heads: {head_name(layer, head)} is not a head of {model} (layers 0..{n_layers - 1}, heads 0..{n_heads - 1})"
            )
    return list(wanted)


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
                result = await self.describer.describe(rendered.messages)
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
                params={**self.describer.params.model_dump(), "requests": result.requests},
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


def describe_model(
    store: Store,
    model: str | None,
    template: Template,
    endpoint: Endpoint,
    backend: LLMBackend,
    *,
    cache: ResponseCache | None = None,
    heads: list[tuple[int, int]] | None = None,
    limit: int | None = None,
    concurrency: int | None = None,
    device: str = "auto",
    analysis_progress: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    describe_progress: Callable[[], AbstractContextManager[ProgressFn | None]] = contextlib.nullcontext,
    warn: Warn = print,
) -> tuple[DescribeJob, RunStats]:
    """The main job: check the endpoint, analyse the model if the store lacks it, then describe
    the missing heads. ``analysis_progress`` and ``describe_progress`` open the progress display
    of each stage (they yield the stage's progress callback)."""
    describer = describer_for(endpoint, backend, cache, concurrency)

    async def main() -> tuple[DescribeJob, RunStats]:
        try:
            await backend.preflight()  # before any analysis work
            with analysis_progress() as progress:
                name = ensure_analysis(store, model, device=device, progress=progress, warn=warn)
            job = DescribeJob(
                store,
                name,
                template,
                describer,
                endpoint.host,
                heads=heads,
                limit=limit,
                local=endpoint.local,
            )
            with describe_progress() as report:
                return job, await job.run(report)
        finally:
            await backend.aclose()

    return asyncio.run(main())
