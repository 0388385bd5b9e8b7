"""``headmaps describe``: the main job. Registered on ``describer.cli.app`` by one import there."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from describer.cli.app import DeviceOpt, ModelArg, _progress, _user_errors, _warn, app, err, out
from describer.cli.store import DbOpt

if TYPE_CHECKING:
    from describer.llm.client import OpenAIBackend
    from describer.pipeline import DescribeJob, Endpoint, RunStats


# The LLM endpoint options, shared by every command that asks an LLM (describe, evaluate descriptions).
LlmModelOpt = Annotated[
    str | None,
    typer.Option(
        envvar="HEADMAPS_LLM_MODEL",
        help="Model name at the endpoint (e.g. gpt-4o). Default: the local qwen2.5-coder-0.5b-instruct.",
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        envvar="HEADMAPS_LLM_BASE_URL",
        help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 (key from OPENAI_API_KEY or "
        "HEADMAPS_LLM_API_KEY). Default: a local server headmaps starts itself.",
    ),
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Requests in flight at once. Default: 8, or 1 for the local model."),
]


@contextmanager
def connect_llm(base_url: str | None, llm_model: str | None) -> Iterator[tuple[Endpoint, OpenAIBackend]]:
    """The endpoint (the local server started and stopped around the block when none is given)
    and a client for it; says so when the answers will come from the weak local model."""
    from describer.llm.client import OpenAIBackend, api_key_from_env
    from describer.llm.local import WEAK_MODEL_NOTE
    from describer.pipeline import open_endpoint

    with open_endpoint(base_url, llm_model) as endpoint:
        if endpoint.local:
            _warn(WEAK_MODEL_NOTE)
        # A CPU-bound local model can take minutes per answer when the machine is busy;
        # timing out would only queue the same work again behind the first try.
        backend = OpenAIBackend(
            endpoint.base_url,
            endpoint.request_model,
            api_key_from_env(),
            timeout_s=900.0 if endpoint.local else 120.0,
        )
        backend.host = endpoint.host
        yield endpoint, backend


def _fmt_cost(cost: float | None) -> str:
    return "cost ?" if cost is None else f"${cost:.4f}"


@app.command()
def describe(
    model: ModelArg = None,
    heads: Annotated[str, typer.Option(help="all, or comma-separated LAYER.HEAD (e.g. 3.1,10.2).")] = "all",
    llm_model: LlmModelOpt = None,
    base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = None,
    prompt: Annotated[
        str, typer.Option(help="Built-in template (salient, salient_evidence) or a .j2 file.")
    ] = "salient_evidence",
    limit: Annotated[int | None, typer.Option(min=1, help="Describe at most N of the missing heads.")] = None,
    db: DbOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")
    ] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Describe every head with an LLM and store the descriptions (the main job).

    Runs the analysis first if the store lacks it; resumable: re-running does only what is missing."""
    import prompts
    from describer.llm.client import Describer, ResponseCache
    from describer.maps.loading import cache_dir, resolve
    from describer.llm.local import WEAK_MODEL_NOTE
    from describer.pipeline import DescribeJob, default_params, ensure_analysis, parse_heads
    from store import open_store

    with _user_errors():
        # Everything that can be checked without work comes first.
        wanted = parse_heads(heads)
        resolve(model)
        template = prompts.load(prompt)
        store = open_store(db)
        cache = ResponseCache(cache_dir() / "llm-cache.sqlite")
        try:
            with connect_llm(base_url, llm_model) as (endpoint, backend):
                describer = Describer(
                    backend,
                    params=default_params(endpoint.local),
                    concurrency=concurrency or endpoint.default_concurrency,
                    cache=cache,
                    model_label=endpoint.label,
                )

                async def main() -> tuple[DescribeJob, RunStats]:
                    try:
                        await backend.preflight()  # before any analysis work
                        with _progress() as progress:
                            name = ensure_analysis(store, model, device=device, progress=progress, warn=_warn)
                        job = DescribeJob(
                            store,
                            name,
                            template,
                            describer,
                            endpoint.host,
                            heads=wanted,
                            limit=limit,
                            local=endpoint.local,
                        )
                        return job, await _run_with_bar(job)
                    finally:
                        await backend.aclose()

                job, stats = asyncio.run(main())
                summary = job.summary(stats)
        finally:
            cache.close()
            store.close()
        if stats.errors:
            _warn(
                f"{stats.errors} head(s) got no answer (last: {stats.last_error}); "
                "they are not stored, re-run to retry them"
            )
        if as_json:
            sys.stdout.write(json.dumps(summary.model_dump()) + "\n")
            return
        out.print(
            f"{escape(summary.model)}: {summary.described}/{summary.heads} heads described "
            f"({summary.unclear} unclear), {summary.failed} failed, with {escape(template.name)} and "
            f"{escape(describer.label)}; this run: {stats.done} head(s), {summary.llm_calls} LLM call(s), "
            f"{summary.tokens_in} tokens in, {summary.tokens_out} out, {_fmt_cost(stats.cost)}, "
            f"{summary.seconds:.1f}s",
            highlight=False,
        )
        if endpoint.local:
            out.print(f"note: {WEAK_MODEL_NOTE}", highlight=False, soft_wrap=True)


async def _run_with_bar(job: DescribeJob) -> RunStats:
    interactive = err.is_terminal or os.environ.get("HEADMAPS_PROGRESS") == "1"
    bar = Progress(
        TextColumn("describing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err,
        disable=not interactive,
    )
    with bar:
        task = bar.add_task("describe", total=None, info="")

        def report(stats: RunStats) -> None:
            bar.update(
                task,
                total=stats.total,
                completed=stats.done + stats.errors,
                info=f"{stats.tokens_in}+{stats.tokens_out} tok, {_fmt_cost(stats.cost)}, {stats.failed} failed",
            )

        return await job.run(report)
