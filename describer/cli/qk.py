"""``headmaps qk``: the optional static QK view of one head (docs/qk.md)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from describer.cli.console import out, progress, user_errors
from describer.cli.options import DeviceOpt
from describer.errors import HeadmapsError
from describer.heads import parse_head
from describer.maps.loading import load_model, resolve


def qk(
    model: Annotated[str, typer.Argument(help="Alias, .gguf file, model directory or hub id.")],
    head: Annotated[str, typer.Argument(help="A head, for example L3.H1.", show_default=False)],
    query: Annotated[
        list[str] | None,
        typer.Option("--query", help="A query token (exactly one token, e.g. ' Paris'); repeatable."),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Preferred key tokens per query.")] = 10,
    queries: Annotated[int, typer.Option(min=1, help="Query tokens chosen when no --query is given.")] = 10,
    source: Annotated[
        str, typer.Option(help="Token representation: residual, linear, embed or embed+mlp0.")
    ] = "residual",
    rotary: Annotated[
        str, typer.Option(help="mean (rotation averaged over offsets 1…64) or none (offset 0).")
    ] = "mean",
    candidates: Annotated[
        int,
        typer.Option(
            min=0,
            help="With --source residual: keys per query scored exactly, picked by the linear proxy; 0 runs "
            "the whole vocabulary through the model (exact; minutes on a GPU).",
        ),
    ] = 128,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check", help="Also measure this head's agreement with the model on random text."
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Which key tokens a head's queries prefer, read from W_Q·W_K (an optional, static view).

    Within-row agreement with the model's attention is measured and printed with it: read the
    caveat line before the table."""
    # torch and transformers take seconds to import: only the commands that load a model pay.
    from describer.maps.jobs import pick_device
    from describer.maps.qk import check_head
    from describer.maps.qk_view import (
        QK_SOURCES,
        QKView,
        family_note,
        make_representation,
        qk_view,
        resolve_queries,
        verdict,
    )
    from describer.maps.qk_view import check as measure

    with user_errors():
        layer, index = parse_head(head)
        if source not in QK_SOURCES:
            raise HeadmapsError(f"unknown --source {source!r}; use one of: {', '.join(QK_SOURCES)}")
        if rotary not in ("mean", "none"):
            raise HeadmapsError(f"unknown --rotary {rotary!r}; use mean or none")
        spec = resolve(model)
        dev = pick_device(device)
        with progress() as report:
            loaded = load_model(spec, dev)
            check_head(loaded.adapter, layer, index)
            query_ids = resolve_queries(loaded.tokenizer, query) if query else None
            rep = make_representation(
                loaded.adapter, loaded.tokenizer, source, dev, report, sweep=candidates == 0
            )
            rows, average, head_qk = qk_view(
                rep,
                layer,
                index,
                query_ids=query_ids,
                n_queries=queries,
                top_k=top,
                candidates=candidates,
                rotary=rotary,  # type: ignore[arg-type]
                progress=report,
            )
            agreement = measure(rep, layer, index, head_qk) if check else None
        view = QKView(
            model=loaded.name,
            family=loaded.family,
            layer=layer,
            head=index,
            source=rep.describe(candidates),
            rotary=head_qk.rotary,
            sample=len(rep.sample),
            queries=rows,
            average=average,
            note=family_note(loaded.family, source, rotary),
            agreement=None
            if agreement is None
            else {**vars(agreement), "verdict": verdict(agreement.static)},
        )
        if as_json:
            sys.stdout.write(view.model_dump_json() + "\n")
            return
        _print(view)


def _print(view: object) -> None:
    v = view
    out.print(
        f"[bold]{escape(v.model)} head {v.layer}.{v.head}[/] ({v.family}): static QK view", soft_wrap=True
    )
    for label, text in (("source", v.source), ("rotary", v.rotary), ("caveat", v.note)):
        out.print(f"{label}: {escape(text)}", soft_wrap=True, highlight=False)
    if v.agreement is not None:
        a = v.agreement
        out.print(
            f"this head: median within-row Spearman {a['static']:.2f} with its attention logits on random "
            f"text ({a['rows']} rows; position alone {a['position']:.2f}, shuffled {a['shuffled']:.2f}): "
            f"{a['verdict']} for this head",
            soft_wrap=True,
            highlight=False,
        )
    table = Table(
        title=f"Preferred keys (z: standard deviations above the query's mean over {v.sample} tokens)"
    )
    for column in ("query token", "spread", "preferred keys (score, z)"):
        table.add_column(column)
    for q in [*v.queries, v.average]:
        keys = ", ".join(f"{k.token!r} ({k.score:.2f}, {k.z:+.1f})" for k in q.keys)
        name = q.token if q.token_id is None else repr(q.token)
        table.add_row(escape(name), f"{q.spread:.2f}", escape(keys))
    out.print(table)
