"""``headmaps describe``: the main job."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import TextColumn

import prompts
from describer.cli.console import make_bar, out, progress, user_errors, warn
from describer.cli.options import BaseUrlOpt, ConcurrencyOpt, DbOpt, DeviceOpt, LlmModelOpt, ModelArg
from describer.errors import HeadmapsError
from describer.mapping_tables import load_mapping_tables
from describer.maps.loading import cache_dir, resolve
from evaluation.embeddings import embed_stored
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
    heads: Annotated[str, typer.Option(help="all, or comma-separated heads (e.g. L3.H1,L10.H2).")] = "all",
    llm_model: LlmModelOpt = None,
    base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = None,
    prompt: Annotated[
        str, typer.Option(help="Built-in template (facts, salient, salient_evidence) or a .j2 file.")
    ] = prompts.DEFAULT_PROMPT,
    limit: Annotated[int | None, typer.Option(min=1, help="Describe at most N of the missing heads.")] = None,
    db: DbOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")
    ] = False,
    device: DeviceOpt = "auto",
    mappings: Annotated[
        Path | None,
        typer.Option(
            "--mappings",
            help="Describe the mapping tables in this JSON file instead of a stored model: "
            '{"heads": [{"name": ..., "salient": [{"token": ..., "mappings": [...]}]}]}. Nothing is stored.',
        ),
    ] = None,
) -> None:
    """Describe every head with an LLM and store the descriptions (the main job).

    Runs the analysis first if the store lacks it; resumable: re-running does only what is missing."""
    # torch: the job analyses the model when the store lacks it; the openai SDK, to ask the LLM.
    from describer.llm import ResponseCache, connect
    from describer.llm.local import WEAK_MODEL_NOTE
    from describer.pipeline import describe_model, parse_heads

    if mappings is not None:
        _describe_file(mappings, model, heads, llm_model, base_url, concurrency, prompt, as_json)
        return
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
            embed_stored(store, model=summary.model)  # a search only reads vectors: write them now
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
            soft_wrap=True,
        )
        if endpoint.local:
            out.print(f"note: {WEAK_MODEL_NOTE}", highlight=False, soft_wrap=True)


def _describe_file(
    path: Path,
    model: str | None,
    heads: str,
    llm_model: str | None,
    base_url: str | None,
    concurrency: int | None,
    prompt: str,
    as_json: bool,
) -> None:
    """``describe --mappings FILE``: every table in the file, printed, nothing stored."""
    # the openai SDK (and llama.cpp when offline), to ask the LLM
    from describer.llm import ResponseCache, connect, describer_for
    from describer.tables import describe_tables  # imports describer.llm: the openai SDK

    with user_errors():
        if model is not None:
            raise HeadmapsError("--mappings describes the tables in a file: give it without a MODEL")
        if heads != "all":
            raise HeadmapsError(
                "--heads chooses heads of a stored model; --mappings describes every table in the file"
            )
        tables = load_mapping_tables(path)  # every check before the LLM is reached
        template = prompts.load(prompt)
        with (
            closing(ResponseCache(cache_dir() / "llm-cache.sqlite")) as cache,
            connect(base_url, llm_model, warn=warn) as (endpoint, backend),
        ):
            describer = describer_for(endpoint, backend, cache, concurrency)
            bar = make_bar(TextColumn("describing"), TextColumn("{task.fields[info]}"))

            async def main():  # noqa: ANN202  (the summary and the run)
                try:
                    await backend.preflight()
                    with bar:
                        task = bar.add_task("tables", total=len(tables), info="")

                        def report(run) -> None:  # noqa: ANN001  (describer.tables.TablesRun)
                            bar.update(
                                task, completed=run.done, info=f"{describer.usage.llm_calls} LLM call(s)"
                            )

                        return await describe_tables(tables, template, describer, progress=report)
                finally:
                    await backend.aclose()

            summary, _ = asyncio.run(main())
        if as_json:
            sys.stdout.write(json.dumps(summary.model_dump()) + "\n")
            return
        for d in summary.descriptions:
            what = d.pattern if d.pattern else "(no answer in the schema)"
            label = escape(f"{d.name} [{d.status}/{d.category or '-'}]")
            out.print(f"{label}: {escape(what)}", highlight=False, soft_wrap=True)
        unclear = sum(d.status == "unclear" for d in summary.descriptions)
        failed = sum(d.status in ("failed", "error") for d in summary.descriptions)
        out.print(
            f"{len(summary.descriptions)} table(s) described ({unclear} unclear, {failed} failed) with "
            f"{escape(template.name)} and {escape(describer.label)}: {summary.llm_calls} LLM call(s), "
            f"{summary.seconds:.1f}s",
            highlight=False,
            soft_wrap=True,
        )
