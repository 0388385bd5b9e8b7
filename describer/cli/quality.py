"""How good the descriptions are: ``headmaps evaluate descriptions`` (automatic scores),
``evaluate ratings`` (people's ratings and their agreement) and ``report`` (one HTML page)."""

from __future__ import annotations

import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from describer.cli.console import check_parent, out, user_errors, warn
from describer.cli.options import BaseUrlOpt, ConcurrencyOpt, DbOpt, LlmModelOpt, ModelArg
from describer.errors import HeadmapsError
from describer.maps.loading import DEFAULT_MODEL, cache_dir, resolve
from describer.maps.settings import STORED_SOURCES
from evaluation.ratings import Agreement, Distribution, ratings_report
from store import Store, open_store
from store.labels import RATING_LABELS

if TYPE_CHECKING:
    from evaluation.scoring import ScoringSummary


def stored_model(store: Store, model: str | None) -> str:
    """The stored name for MODEL: as given when stored, else the name ``analyze`` gives it (a
    path or alias); without MODEL the only stored model, else the default model."""

    names = [m.name for m in store.list_models()]
    if model is None:
        return names[0] if len(names) == 1 else DEFAULT_MODEL
    if model in names:
        return model
    try:
        return resolve(model).name
    except HeadmapsError:
        return model  # the store's "unknown model" error lists what it holds


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def evaluate_descriptions(
    model: ModelArg = None,
    llm_model: LlmModelOpt = None,
    base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Score at most N descriptions.")] = None,
    threshold: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Best operation score that makes a head a positive."),
    ] = 0.3,
    holdout: Annotated[
        str,
        typer.Option(
            help="Simulate on sources the description's prompt did not show (unseen) or on ones it "
            "showed (shown: a description can be right about those by restating its prompt)."
        ),
    ] = "unseen",
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Score the model's descriptions automatically and store the scores: simulation (can an
    LLM predict the head's mappings for sources the description's prompt did not show?) and
    operation agreement (does the description name the operation the head scores high on?
    precision and recall, apart for prompts that showed operation names)."""
    # The openai SDK: only the commands that ask an LLM import it.
    from describer.llm import ResponseCache, connect
    from evaluation.scoring import HOLDOUTS, ScoringSettings, score_descriptions

    with user_errors():
        if holdout not in HOLDOUTS:
            raise HeadmapsError(f"unknown --holdout {holdout!r}; use {' or '.join(HOLDOUTS)}")
        with (
            open_store(db) as store,
            closing(ResponseCache(cache_dir() / "llm-cache.sqlite")) as cache,
        ):
            summary = score_descriptions(
                store,
                stored_model(store, model),
                connect(base_url, llm_model, warn=warn),
                ScoringSettings(threshold=threshold, holdout=holdout),
                cache=cache,
                concurrency=concurrency,
                limit=limit,
            )
        if summary.errors:
            warn(f"{summary.errors} request(s) got no answer; nothing stored for them, re-run to retry")
        if as_json:
            sys.stdout.write(summary.model_dump_json() + "\n")
            return
        _print_scores(summary)


def _print_scores(summary: ScoringSummary) -> None:
    from evaluation.scoring import SKIP_REASONS  # imports the openai SDK, as evaluate_descriptions does

    sim = summary.simulation
    groups = (
        ("agreement, ops not shown", summary.operation_agreement),
        ("agreement, ops shown", summary.operation_agreement_shown),
    )
    table = Table(title=f"{summary.model}: description scores by {summary.llm_model}")
    for column in ("scorer", "descriptions", "failed", "score"):
        table.add_column(column)
    table.add_row(f"simulation, {sim.holdout} sources", str(sim.scored), str(sim.failed), _num(sim.mean))
    for reason, count in sim.skipped.items():
        table.add_row(f"  not simulated: {reason}", str(count), "", "")
    for label, agr in groups:
        table.add_row(
            label,
            f"{agr.positives} pos., {agr.controls} control",
            str(agr.failed),
            f"P {_num(agr.precision, 2)}, R {_num(agr.recall, 2)}",
        )
    out.print(table)
    if sim.by_describer:
        by = Table(title=f"Simulation score ({sim.holdout} sources) by prompt / describing LLM")
        by.add_column("prompt / LLM")
        by.add_column("mean", justify="right")
        for group, mean in sim.by_describer.items():
            by.add_row(escape(group), _num(mean))
        out.print(by)

    def line(text: str) -> None:
        out.print(text, highlight=False, soft_wrap=True)

    on = "sources the prompt did not show" if sim.holdout == "unseen" else "sources the prompt showed"
    line(f"simulation on {on}: {sim.scored} scored, mean {_num(sim.mean)} (accuracy above chance)")
    for _, agr in groups:
        prompts = ", ".join(f"{name} {n}" for name, n in agr.by_prompt.items()) or "none"
        line(
            f"operation agreement, {agr.group} (threshold {agr.threshold:g}): precision "
            f"{_num(agr.precision, 2)}, recall {_num(agr.recall, 2)}; {agr.true_positives} TP, "
            f"{agr.false_positives} FP, {agr.false_negatives} FN, {agr.true_negatives} TN "
            f"(prompts: {escape(prompts)})"
        )
    line(
        f"this run: {summary.llm_calls} LLM call(s), {summary.tokens_in} tokens in, "
        f"{summary.tokens_out} out, {summary.seconds:.1f}s"
    )
    for reason, count in sim.skipped.items():
        hint = f"; analyse again with --top-tokens {STORED_SOURCES}" if reason == "no_unseen" else ""
        line(
            f"note: {count} description(s) not simulated ({reason}): {SKIP_REASONS.get(reason, reason)}{hint}"
        )
    if sim.other_holdout:
        other = "shown" if sim.holdout == "unseen" else "unseen"
        line(
            f"note: {sim.other_holdout} stored simulation score(s) on {other} sources left out (--holdout {other})"
        )
    shown = summary.operation_agreement_shown
    if shown.positives + shown.controls + shown.failed:
        line(
            "note: agreement where the prompt showed operations is circular (the description can copy "
            "the name); quote the other group"
        )


def evaluate_ratings(
    model: ModelArg = None,
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """People's ratings of the descriptions: label distributions (overall, per category, per
    prompt, per LLM) and inter-rater agreement with bootstrap 95% intervals."""

    with user_errors(), open_store(db) as store:
        report = ratings_report(store, stored_model(store, model))
    if as_json:
        sys.stdout.write(report.model_dump_json() + "\n")
        return

    short = {
        "plausible": "plaus.",
        "partially_plausible": "partly",
        "not_plausible": "not",
        "cannot_tell": "?",
    }
    table = Table(title=f"{report.model}: {report.ratings} rating(s) by {len(report.raters)} rater(s)")
    table.add_column("group", overflow="fold")
    for column in ("ratings", "descr.", *(short.get(label, label) for label in RATING_LABELS), "share"):
        table.add_column(column, justify="right", min_width=len(column), no_wrap=True)

    def rows(title: str, groups: list[Distribution]) -> None:
        for d in groups:
            table.add_row(
                escape(f"{title}{d.group}"),
                str(d.ratings),
                str(d.descriptions),
                *(str(d.counts[label]) for label in RATING_LABELS),
                _num(d.share_plausible, 2),
            )

    rows("", [report.overall])
    rows("category: ", report.by_category)
    rows("prompt: ", report.by_prompt)
    rows("LLM: ", report.by_llm)
    out.print(table)
    legend = ", ".join(f"{short.get(label, label)} = {label}" for label in RATING_LABELS)
    out.print(f"{legend}; share = plausible among judged ratings", highlight=False, soft_wrap=True)

    def line(name: str, a: Agreement | None) -> None:
        if a is None:
            out.print(f"{name}: needs two raters of the same descriptions", highlight=False)
            return
        out.print(
            f"{name}: {a.statistic} = {_num(a.value)} (95% CI {_num(a.low)} to {_num(a.high)}), "
            f"{a.raters} raters, {a.units} shared description(s)",
            highlight=False,
        )

    line("agreement", report.agreement)
    line("ordinal agreement", report.ordinal_agreement)


def report(
    model: ModelArg = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    db: DbOpt = None,
) -> None:
    """One self-contained HTML page for a model: operation heatmaps, the correlation table,
    and every head's mappings, descriptions, scores and ratings, searchable in the page."""
    # The web package imports FastAPI: only ``serve`` and ``report`` need it.
    from evaluation.web.report import write_report

    with user_errors():
        output = output.expanduser()
        check_parent(output)
        with open_store(db) as store:
            name = stored_model(store, model)
            path = write_report(store, name, output)
        out.print(f"{name}: report written to {path}", highlight=False, soft_wrap=True)
