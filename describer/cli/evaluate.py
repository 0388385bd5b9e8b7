"""``headmaps evaluate correlation`` and ``evaluate causal``: the MAPS paper's validation
experiments, which run the model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from describer.cli.console import check_parent, err, out, progress, user_errors, warn, write_atomic
from describer.cli.options import (
    AttnNormOpt,
    DbOpt,
    DeviceOpt,
    FoldNormsOpt,
    MlpNormOpt,
    ModelArg,
    NormsOpt,
    SourceOpt,
)
from describer.errors import HeadmapsError
from describer.maps.operations import load_pairs_paths, select_operations
from describer.maps.settings import SourceChoice, describe_norms
from evaluation.correlation_stats import paper_medians
from store import open_store


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def correlation(
    model: ModelArg = None,
    operations: Annotated[str, typer.Option(help="all, or comma-separated operation names.")] = "all",
    pairs: Annotated[
        list[Path] | None,
        typer.Option(
            help="Your own operations instead of the built-in ones: a pairs file (as for `score --pairs`; "
            "its stem names the operation) or a directory of them. Repeatable."
        ),
    ] = None,
    max_pairs: Annotated[
        int, typer.Option(min=0, help="Pairs per operation (a fixed random sample); 0 for all.")
    ] = 50,
    k: Annotated[int | None, typer.Option(min=1, help="Override every operation's k.")] = None,
    source: SourceOpt = None,
    norms: NormsOpt = None,
    mlp_norm: MlpNormOpt = None,
    attn_norm: AttnNormOpt = None,
    fold_norms: FoldNormsOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per forward pass.")] = 64,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    csv_path: Annotated[Path | None, typer.Option("--output", "-o", help="Write the table as CSV.")] = None,
    db: DbOpt = None,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="Do not record the table in the database.")
    ] = False,
) -> None:
    """Pearson r between static and dynamic (in-context) scores over all heads, per operation.

    Prompts are the paper's four templates around each source word; each head's output at the
    last position is projected to the vocabulary with its real attention (with context) and with
    its attention forced onto the source word (without context)."""
    # torch and transformers take seconds to import: only the commands that run a model load them.
    from evaluation.correlation import to_csv
    from evaluation.experiments import correlation_experiment, correlation_payload, record_correlation

    with user_errors():
        choice = SourceChoice.checked(
            source, norms=norms, mlp_norm=mlp_norm, attn_norm=attn_norm, fold_norms=fold_norms
        )
        ops = load_pairs_paths(pairs) if pairs else select_operations(operations)
        check_parent(csv_path)
        with progress() as report:
            loaded, result = correlation_experiment(
                model,
                ops,
                k=k,
                choice=choice,
                device=device,
                max_pairs=max_pairs or None,
                batch_size=batch_size,
                progress=report,
                warn=warn,
                strict=bool(pairs),
            )
        if csv_path is not None:
            write_atomic(csv_path, to_csv(result))
        if not no_store:
            with open_store(db) as store:
                record_correlation(store, loaded, result, "pairs" if pairs else operations, max_pairs)
        undefined = [
            r.operation
            for r in result.rows
            if None
            in (
                r.r_without_context,
                r.r_with_context,
                r.suppression_r_without_context,
                r.suppression_r_with_context,
            )
        ]
        if undefined:
            warn(
                "r is undefined (null / n/a) where static or dynamic scores are equal for every head: "
                + ", ".join(undefined)
            )
        if as_json:
            payload = {"model": result.model, **correlation_payload(result)}
            sys.stdout.write(json.dumps(payload) + "\n")
            return
        s = result.settings
        table = Table(
            title=f"{result.model}: static vs dynamic scores (source {s['source']}, "
            f"{describe_norms(s)}, ≤{max_pairs or 'all'} pairs)"
        )
        columns = ("category", "operation", "pairs", "k", "max static", "r w/o ctx", "r with ctx")
        for column in (*columns, "ceiling w/o", "ceiling with", "suppr. r w/o", "suppr. r with"):
            table.add_column(column, justify="left" if column in ("category", "operation") else "right")
        for r in sorted(result.rows, key=lambda r: (r.category, r.operation)):
            table.add_row(
                r.category,
                r.operation,
                str(r.n_pairs),
                str(r.k),
                f"{r.max_static:.2f}",
                _fmt(r.r_without_context),
                _fmt(r.r_with_context),
                _fmt(r.ceiling_without_context),
                _fmt(r.ceiling_with_context),
                _fmt(r.suppression_r_without_context),
                _fmt(r.suppression_r_with_context),
            )
        out.print(table)
        medians = Table(title="Median r over operations")
        for column in ("model", "without context", "with context"):
            medians.add_column(column)
        for label, without, with_ in (
            ("r over templates × heads", result.median_r_without_context, result.median_r_with_context),
            (
                "r, template-averaged",
                result.median_r_without_context_averaged,
                result.median_r_with_context_averaged,
            ),
            (
                "within-layer r",
                result.median_within_layer_r_without_context,
                result.median_within_layer_r_with_context,
            ),
            ("template ceiling", result.median_ceiling_without_context, result.median_ceiling_with_context),
        ):
            medians.add_row(f"[bold]{result.model}[/] {label}", _fmt(without), _fmt(with_))
        paper = paper_medians()
        for name, (without, with_) in paper.items():
            medians.add_row(f"{name} (paper)", _fmt(without), _fmt(with_))
        out.print(medians)
        if not paper:
            err.print("(the paper's tables were not found; set HEADMAPS_PAPER_DIR to compare)")
        if csv_path is not None:
            out.print(f"written to {csv_path}", highlight=False)


def causal(
    model: ModelArg = None,
    operation: Annotated[str, typer.Option(help="The operation whose top heads are ablated.")] = "",
    control: Annotated[
        str | None, typer.Option(help="Control operation. Default: country_to_capital, or name_copying.")
    ] = None,
    max_heads: Annotated[int, typer.Option(min=1, help="Ablate the top 1..M heads.")] = 8,
    seeds: Annotated[int, typer.Option(min=1, help="Random-head draws per m.")] = 3,
    shots: Annotated[int, typer.Option(min=1, help="Demonstrations per few-shot prompt.")] = 3,
    max_prompts: Annotated[int, typer.Option(min=1, help="Prompts per operation.")] = 50,
    k: Annotated[int | None, typer.Option(min=1, help="k of the static scores that rank the heads.")] = None,
    source: SourceOpt = None,
    norms: NormsOpt = None,
    mlp_norm: MlpNormOpt = None,
    attn_norm: AttnNormOpt = None,
    fold_norms: FoldNormsOpt = None,
    device: DeviceOpt = "auto",
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for the CSV and the PNG plot.")
    ] = Path("."),
) -> None:
    """Ablate the operation's top heads one by one (zeroed at the last position) and measure the
    model's few-shot accuracy, against random heads and a control operation. Writes
    causal_MODEL_OPERATION.csv and .png."""
    # torch, as in ``correlation``.
    from evaluation.causal import plot, to_csv
    from evaluation.experiments import causal_experiment

    with user_errors():
        choice = SourceChoice.checked(
            source, norms=norms, mlp_norm=mlp_norm, attn_norm=attn_norm, fold_norms=fold_norms
        )
        if not operation:
            raise HeadmapsError("give --operation NAME")
        control = control or ("country_to_capital" if operation != "country_to_capital" else "name_copying")
        if control == operation:
            raise HeadmapsError("the control operation must differ from --operation")
        (op,) = select_operations(operation)
        (ctl,) = select_operations(control)
        if not output.is_dir():
            raise HeadmapsError(f"{output}: no such directory")
        with progress() as report:
            result = causal_experiment(
                model,
                op,
                ctl,
                k=k,
                choice=choice,
                device=device,
                max_heads=max_heads,
                seeds=seeds,
                n_shots=shots,
                max_prompts=max_prompts,
                progress=report,
                warn=warn,
            )
        stem = f"causal_{result.model.replace('/', '_')}_{result.operation}"
        write_atomic(output / f"{stem}.csv", to_csv(result))
        plot(result, output / f"{stem}.png")
        table = Table(title=f"{result.model}: {result.operation} ({result.n_prompts} few-shot prompts)")
        for column in ("m", "ablated", "acc top-m", "acc random", f"control {result.control}"):
            table.add_column(column)
        for p in result.points:
            table.add_row(
                str(p.m),
                " ".join(p.heads[-1:]),
                f"{p.accuracy_top:.2f}",
                f"{p.accuracy_random:.2f}±{p.accuracy_random_std:.2f}",
                f"{p.accuracy_control:.2f}",
            )
        out.print(table)
        out.print(f"written to {output / stem}.csv and .png", highlight=False)
