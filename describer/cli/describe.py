"""``headmaps describe``: the main job."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import TextColumn

import prompts
from describer.cli.console import make_bar, out, progress, user_errors, warn
from describer.cli.options import BaseUrlOpt, ConcurrencyOpt, DbOpt, DeviceOpt, LlmModelOpt, ModelArg
from describer.maps.loading import cache_dir, resolve
from store import open_store


def fmt_cost(cost: float | None) -> str:
    return "cost ?" if cost is None else f"${cost:.4f}"


@contextmanager
def _describe_bar() -> Iterator:  # noqa: ANN206  (yields describer.pipeline.ProgressFn)
    bar = make_bar(TextColumn("describing"), TextColumn("{task.fields[info]}"))
    with bar:
        task = bar.add_task("describe", total=None, info="")

        def report(stats) -> None:  # noqa: ANN001  (describer.pipeline.RunStats)
            bar.update(
                task,
                total=stats.total,
                completed=stats.done + stats.errors,
                info=f"{stats.tokens_in}+{stats.tokens_out} tok, {fmt_cost(stats.cost)}, {stats.failed} failed",
            )

        yield report


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
    # torch: the job analyses the model when the store lacks it; the openai SDK, to ask the LLM.
    from describer.llm import ResponseCache, connect
    from describer.llm.local import WEAK_MODEL_NOTE
    from describer.pipeline import describe_model, parse_heads

    with user_errors():
        # Everything that can be checked without work comes first.
        wanted = parse_heads(heads)
        resolve(model)
        template = prompts.load(prompt)
        with (
            open_store(db) as store,
            closing(ResponseCache(cache_dir() / "llm-cache.sqlite")) as cache,
            connect(base_url, llm_model, warn=warn) as (endpoint, backend),
        ):
            job, stats = describe_model(
                store,
                model,
                template,
                endpoint,
                backend,
                cache=cache,
                heads=wanted,
                limit=limit,
                concurrency=concurrency,
                device=device,
                analysis_progress=progress,
                describe_progress=_describe_bar,
                warn=warn,
            )
            summary = job.summary(stats)
        if stats.errors:
            warn(
                f"{stats.errors} head(s) got no answer (last: {stats.last_error}); "
                "they are not stored, re-run to retry them"
            )
        if as_json:
            sys.stdout.write(json.dumps(summary.model_dump()) + "\n")
            return
        out.print(
            f"{escape(summary.model)}: {summary.described}/{summary.heads} heads described "
            f"({summary.unclear} unclear), {summary.failed} failed, with {escape(template.name)} and "
            f"{escape(job.describer.label)}; this run: {stats.done} head(s), {summary.llm_calls} LLM call(s), "
            f"{summary.tokens_in} tokens in, {summary.tokens_out} out, {fmt_cost(stats.cost)}, "
            f"{summary.seconds:.1f}s",
            highlight=False,
        )
        if endpoint.local:
            out.print(f"note: {WEAK_MODEL_NOTE}", highlight=False, soft_wrap=True)
