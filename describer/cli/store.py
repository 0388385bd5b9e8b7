"""``headmaps db upgrade``, ``db info``, ``export``, ``import`` and ``show``: the store from the
command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from describer.cli.console import check_parent, out, user_errors, write_atomic
from describer.cli.options import DbOpt
from describer.errors import HeadmapsError
from describer.heads import parse_head
from describer.maps.loading import DEFAULT_MODEL
from describer.maps.patterns import PATTERNS, notable_patterns
from describer.maps.settings import NORM_PARTS
from describer.tokens import visible
from evaluation.embeddings import embed_stored
from store import export_store, import_file, open_store
from store.db import code_head, current_revision, upgrade_schema
from store.engine import default_url, make_engine
from store.records import HeadView

# --- db ----------------------------------------------------------------------------------------


def db_upgrade(db: DbOpt = None) -> None:
    """Create the database, or migrate it to this version's schema."""
    with user_errors():
        engine = make_engine(db or default_url())
        try:
            before, after = upgrade_schema(engine)
        finally:
            engine.dispose()
        shown = engine.url.render_as_string(hide_password=True)
        if before == after:
            out.print(f"{shown} is up to date (schema {after})", highlight=False, soft_wrap=True)
        else:
            out.print(f"{shown}: schema {before or 'none'} -> {after}", highlight=False, soft_wrap=True)


def db_info(db: DbOpt = None) -> None:
    """Where the database is, its schema version, and what it holds per model."""
    with user_errors(), open_store(db, upgrade=False) as store:
        out.print(f"database: {store.url}", highlight=False, soft_wrap=True)
        out.print(f"schema: {current_revision(store.engine)} (this headmaps: {code_head()})", highlight=False)
        table = Table(title="Models")
        for column in ("model", "family", "layers×heads", "analysed", "described", "rated", "unclear"):
            table.add_column(column)
        for m in store.list_models():
            table.add_row(
                escape(m.name),
                m.family,
                f"{m.n_layers}×{m.n_heads}",
                str(m.heads),
                str(m.described),
                str(m.rated),
                str(m.unclear),
            )
        out.print(table)


# --- export / import -----------------------------------------------------------------------------


def export(
    model: Annotated[
        str | None, typer.Argument(help="Export only this stored model. Default: everything.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="json, or csv (a zip of one CSV per table).")] = "json",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
    ] = None,
    db: DbOpt = None,
) -> None:
    """Export the store (mappings, scores, descriptions, ratings, runs) to one file."""
    with user_errors():
        if fmt not in ("json", "csv"):
            raise HeadmapsError(f"unknown format {fmt!r}; use json or csv")
        if fmt == "csv" and output is None and sys.stdout.isatty():
            raise HeadmapsError("--format csv writes a zip file: give -o PATH")
        check_parent(output)
        with open_store(db) as store:
            data = export_store(store, model, fmt)
        if output is None:
            if isinstance(data, bytes):
                sys.stdout.buffer.write(data)
            else:
                sys.stdout.write(data)
            return
        if isinstance(data, bytes):
            tmp = output.expanduser().with_name(f".{output.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(output.expanduser())
        else:
            write_atomic(output, data)
        typer.echo(f"exported to {output}", err=True)


def import_(
    path: Annotated[Path, typer.Argument(help="A file written by `headmaps export` (JSON or CSV zip).")],
    db: DbOpt = None,
) -> None:
    """Import an export file; what is stored already is kept, nothing is duplicated."""
    with user_errors(), open_store(db) as store:
        added = import_file(store, path)
        embed_stored(store)  # descriptions exported without vectors: a search only reads them
        summary = ", ".join(f"{n} {table}" for table, n in added.items() if n) or "nothing new"
        out.print(f"imported {path}: {summary}", highlight=False, soft_wrap=True)


# --- show -----------------------------------------------------------------------------------------


def show(
    target: Annotated[
        list[str],
        typer.Argument(
            help="[MODEL] HEAD (e.g. L3.H1). MODEL defaults to the only stored model, else gemma-3-270m.",
            show_default=False,
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the head as one JSON object.")] = False,
    db: DbOpt = None,
) -> None:
    """A head's salient mappings, relation evidence, operation and attention-pattern scores,
    descriptions and ratings."""
    with user_errors():
        if len(target) not in (1, 2):
            raise HeadmapsError("give [MODEL] HEAD, e.g. L3.H1")
        layer, head = parse_head(target[-1])
        with open_store(db) as store:
            if len(target) == 2:
                model = target[0]
            else:
                stored = store.list_models()
                model = stored[0].name if len(stored) == 1 else DEFAULT_MODEL
            view = store.get_head(model, layer, head)
        if as_json:
            sys.stdout.write(view.model_dump_json() + "\n")
            return
        _print_head(view)


def _print_head(view: HeadView) -> None:
    out.print(f"[bold]{escape(view.model)} head L{view.layer}.H{view.head}[/]", soft_wrap=True)
    if view.settings is not None:
        keys = ("source", *NORM_PARTS, "residual_prefix", "salient_sources")
        shown = {k: view.settings[k] for k in keys if k in view.settings}
        out.print(f"analysis {view.settings_key} {json.dumps(shown)}", highlight=False)
    if view.salient:
        table = Table(title="Salient operations")
        for column in ("#", "source token", "amplification", "mapped to (logit)"):
            table.add_column(column)
        for s in view.salient:
            mapped = ", ".join(f"{visible(m.token)} ({m.logit:.2f})" for m in s.mappings)
            table.add_row(str(s.rank), escape(visible(s.token)), f"{s.amplification:.3f}", escape(mapped))
        out.print(table)
    else:
        out.print("no salient mappings stored for this head (run `headmaps analyze`)")
    if view.relations:
        out.print("[bold]Relations[/] (rows of the salient table satisfying each)")
        for r in view.relations:
            examples = ", ".join(f"{visible(s)} → {visible(o)}" for s, o in r.examples)
            line = f"  {r.text()}" + (f"   e.g. {examples}" if examples else "")
            out.print(escape(line), soft_wrap=True, highlight=False)
    if view.operations:
        table = Table(title="Operation scores (highest first)")
        for column in ("operation", "category", "k", "relation", "suppression"):
            table.add_column(column)
        for o in view.operations:
            table.add_row(o.name, o.category, str(o.k), f"{o.relation:.3f}", f"{o.suppression:.3f}")
        out.print(table)
    if view.patterns:
        _print_patterns(view.patterns)
    for d in view.descriptions:
        out.print(
            f"\n[bold]description {d.id}[/] ({d.status}, {escape(d.llm_model)}, prompt {escape(d.prompt_name)} "
            f"{d.prompt_sha[:8]}, {d.created_at:%Y-%m-%d %H:%M})",
            soft_wrap=True,
        )
        for label, value in (("category", d.category), ("pattern", d.pattern), ("inputs", d.inputs)):
            if value:
                out.print(f"  {label}: {escape(value)}", soft_wrap=True, highlight=False)
        if d.reasoning:
            out.print(f"  reasoning: {escape(d.reasoning)}", soft_wrap=True, highlight=False)
        for sc in d.scores:
            value = "no score (unusable answer)" if sc.score is None else f"{sc.score:.3f}"
            out.print(f"  {sc.scorer} score {value} (judged by {escape(sc.llm_model)})", highlight=False)
        for r in d.ratings:
            comment = f" — {escape(r.comment)}" if r.comment else ""
            out.print(f"  rated {r.label} by {escape(r.rater)}{comment}", soft_wrap=True, highlight=False)
        replaced = len(d.history) - len(d.ratings)
        if replaced:
            out.print(f"  ({replaced} earlier rating(s) replaced)")
    if not view.descriptions:
        out.print("no descriptions yet")


def _print_patterns(scores: dict[str, float]) -> None:
    """The head's attention-pattern scores, in ``PATTERNS`` order; notable ones starred."""
    table = Table(title="Attention patterns (what it attends to)")
    for column in ("pattern", "score", "unit", "notable"):
        table.add_column(column)
    notable = dict(notable_patterns(scores))
    known = [name for name in PATTERNS if name in scores]
    for name in known + sorted(set(scores) - set(known)):
        pattern = PATTERNS.get(name)
        table.add_row(
            escape(name),
            f"{scores[name]:.3f}",
            pattern.unit if pattern else "",
            f"* {pattern.label}" if pattern and name in notable else "",
        )
    out.print(table)
