"""``headmaps serve`` (the review web app), ``search`` and ``rate`` (the review queue in the
terminal)."""

from __future__ import annotations

import json
import math
import sys
from typing import Annotated

import click
import typer
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from describer.cli.console import err, out, user_errors, warn
from describer.cli.options import DbOpt
from describer.cli.search_output import print_search
from describer.errors import HeadmapsError
from describer.maps.patterns import PATTERNS
from describer.tokens import visible
from evaluation.embeddings import embed_in_background, embed_stored
from evaluation.relations import check_fraction, find_heads
from evaluation.semantic import Filters, split_min_scores
from evaluation.semantic import search as run_search
from store import Store, open_store
from store.head_search import TokenQuery
from store.labels import RATING_LABELS, RATING_MEANINGS
from store.records import RatingIn, RelationHit


def serve(
    host: Annotated[
        str,
        typer.Option(help="Address to bind; loopback unless you mean to share it (then raters are needed)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="A host name the app answers to besides the bound address (repeatable), e.g. the "
            "name people reach it by. Other Host headers get 400 (DNS rebinding)."
        ),
    ] = None,
    db: DbOpt = None,
) -> None:
    """Serve the review web app: models, heatmaps, heads, the review queue, search, /api/.

    Without raters it is one user's app on loopback; with raters (`headmaps raters add`) every
    rating needs a signed-in rater, and it may listen beyond loopback."""
    # uvicorn and FastAPI only for the command that serves.
    import uvicorn

    from evaluation.web import create_app
    from evaluation.web.auth import is_loopback

    with user_errors():
        web = create_app(db, host=host, allowed_hosts=tuple(allowed_host or ()))
        store = web.state.store
        if not is_loopback(host) and not store.has_raters():
            store.close()
            raise HeadmapsError(
                f"serving beyond loopback ({host}) needs raters, so that every rating is someone's: "
                "headmaps raters add NAME"
            )
        if host in ("0.0.0.0", "::") and not allowed_host:
            warn(
                f"listening on {host}: only requests for {host} itself are answered; give the names "
                "people use with --allowed-host NAME"
            )
        # Descriptions stored without a vector are embedded once, off the request path: a
        # search request never writes.
        embed_in_background(store)
        mode = "raters sign in" if store.has_raters() else "single local user, no raters"
        err.print(f"headmaps: serving {store.url} at http://{host}:{port}/ ({mode})", highlight=False)
        uvicorn.run(web, host=host, port=port, log_level="warning")


def _min_scores(values: list[str]) -> dict[str, float]:
    """``--min-score`` values, ``NAME=NUMBER`` each (an operation or an attention pattern)."""
    scores: dict[str, float] = {}
    for value in values:
        name, eq, number = value.partition("=")
        try:
            minimum = float(number)
        except ValueError:
            minimum = math.nan
        if not (eq and name.strip()) or not math.isfinite(minimum):
            raise HeadmapsError(
                "--min-score takes OPERATION=NUMBER or PATTERN=NUMBER, e.g. copying=0.3 or "
                f"induction=0.5, not {value!r}"
            )
        scores[name.strip()] = minimum
    return scores


def search(
    query: Annotated[
        str | None,
        typer.Argument(
            help="What the heads do, in words. Without it, lists the heads passing the filters.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    category: Annotated[str | None, typer.Option(help="Only descriptions of this category.")] = None,
    min_score: Annotated[
        list[str] | None,
        typer.Option(
            help="OPERATION=NUMBER: the head's relation score at least this; or PATTERN=NUMBER "
            f"({', '.join(PATTERNS)}): its attention-pattern score at least this (repeatable).",
        ),
    ] = None,
    layers: Annotated[str | None, typer.Option(help="Layer range, e.g. 4-10.")] = None,
    label: Annotated[
        str | None, typer.Option(help="Only descriptions with a current rating of this label.")
    ] = None,
    unclear: Annotated[
        bool | None, typer.Option("--unclear/--clear", help="Only unclear, or only clear, ones.")
    ] = None,
    relation: Annotated[
        str | None,
        typer.Option(
            help="Heads whose salient rows satisfy this relation: a key (copy, suffix:+ed, "
            "operation:country_to_capital, script:outputs:cjk, …) or a prefix ending in ':'. "
            "Without QUERY, lists those heads, strongest first.",
        ),
    ] = None,
    min_fraction: Annotated[
        float, typer.Option(help="With --relation: the least fraction of rows satisfying it (0 to 1).")
    ] = 0.0,
    source: Annotated[str | None, typer.Option(help="Heads with this salient (source) token.")] = None,
    target: Annotated[str | None, typer.Option(help="Heads mapping a salient token to this one.")] = None,
    exact: Annotated[
        bool,
        typer.Option(help="Compare tokens exactly (default: ignoring a leading space or ▁/Ġ, and case)."),
    ] = False,
    show: Annotated[
        list[str] | None,
        typer.Option(
            help="Show each hit's score on this operation or pattern (repeatable; the first ranks heads)."
        ),
    ] = None,
    mode: Annotated[str, typer.Option(help="hybrid, semantic or fulltext.")] = "hybrid",
    limit: Annotated[int, typer.Option(min=1, max=500)] = 10,
    offset: Annotated[int, typer.Option(min=0, max=10_000, help="Skip this many hits (the next page).")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: {results, mode, offset, more, total}.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """Find heads by what their descriptions say (full text and sentence embeddings), or without
    words by their analysis: scores (--min-score, --show), relations (--relation), and the tokens
    they map (--source X --target Y)."""

    with user_errors():
        if relation is None and min_fraction != 0.0:
            raise HeadmapsError("--min-fraction needs --relation KEY")
        if relation is not None:
            check_fraction(min_fraction)
        tokens = TokenQuery(source=source or None, target=target or None, match="exact" if exact else "loose")
        by_analysis = bool(min_score or show or tokens.active or model or category or layers or label)
        if query is None and not by_analysis and unclear is None:
            if relation is None:
                raise HeadmapsError(
                    "give a QUERY, or filters (--relation, --min-score, --source/--target, …) to list heads"
                )
            with open_store(db) as store:
                hits = find_heads(store, relation, model=model, min_fraction=min_fraction, limit=limit)
            _print_relation_hits(hits, relation, min_fraction, as_json)
            return
        if mode not in ("hybrid", "semantic", "fulltext"):
            raise HeadmapsError(f"--mode is hybrid, semantic or fulltext, not {mode!r}")
        low = high = None
        if layers:
            first, _, last = layers.partition("-")
            try:
                low, high = int(first), int(last or first)
            except ValueError:
                raise HeadmapsError(f"--layers takes FIRST-LAST, e.g. 4-10, not {layers!r}") from None
        operations, patterns = split_min_scores(_min_scores(min_score or []))
        filters = Filters(
            model=model,
            category=category,
            layer_min=low,
            layer_max=high,
            min_scores=operations,
            min_patterns=patterns,
            label=label,
            unclear=unclear,
            relation=relation,
            min_fraction=min_fraction,
            tokens=tokens,
            show=show or [],
        )
        with open_store(db) as store:
            if mode != "fulltext" and query:
                embed_stored(store)  # what an older headmaps stored without a vector
            result = run_search(store, query or "", filters, limit=limit, mode=mode, offset=offset)  # type: ignore[arg-type]
    print_search(result, filters, as_json)


def _print_relation_hits(hits: list[RelationHit], relation: str, min_fraction: float, as_json: bool) -> None:
    if as_json:
        rows = [h.model_dump() for h in hits]
        sys.stdout.write(
            json.dumps({"results": rows, "relation": relation, "min_fraction": min_fraction}) + "\n"
        )
        return
    if not hits:
        out.print(f"No head has relation {escape(repr(relation))} in at least {min_fraction:g} of its rows.")
        return
    heads = "head" if len(hits) == 1 else "heads"
    out.print(f"{len(hits)} {heads} with {escape(relation)}, strongest first:", highlight=False)
    for h in hits:
        examples = ", ".join(f"{s!r} → {o!r}" for s, o in h.examples)
        line = f"{h.model} {h.layer}.{h.head}  {h.relation}  {h.text()}" + (
            f"   e.g. {examples}" if examples else ""
        )
        out.print(escape(line), soft_wrap=True, highlight=False)


# --- rate: the review queue in the terminal ------------------------------------------------------


def _read_key(prompt: str) -> str:
    """One key: a single keypress on a terminal, else the first character of a line of input."""
    out.print(prompt, end="", highlight=False)
    if sys.stdin.isatty():
        key = click.getchar()
        out.print(key)
        return key
    line = sys.stdin.readline()
    if not line:
        return "q"
    return line.strip()[:1] or ""


def _panel(store: Store, description_id: int, done: int, total: int) -> Panel:
    d = store.get_description(description_id)
    view = store.get_head(d.model, d.layer, d.head)
    mappings = Table(box=None, show_header=True, pad_edge=False)
    mappings.add_column("source")
    mappings.add_column("amp", justify="right")
    mappings.add_column("mapped to")
    for s in view.salient[:10]:
        mappings.add_row(
            escape(visible(s.token)),
            f"{s.amplification:.2f}",
            escape(", ".join(visible(m.token) for m in s.mappings)),
        )
    scores = ", ".join(f"{escape(o.name)} {o.relation:.2f}" for o in view.operations[:5]) or "none stored"
    body = [
        f"[bold]{escape(d.pattern or '(no pattern)')}[/]",
        f"inputs: {escape(d.inputs or '—')}   category: {escape(d.category or '—')}"
        + ("   [yellow]unclear[/]" if d.unclear else ""),
        f"[dim]{escape(d.reasoning or '')}[/]",
        "",
        mappings,
        f"top operation scores: {scores}",
    ]
    title = f"{escape(d.model)} L{d.layer}.H{d.head} · description #{d.id} · {done} of {total} rated"
    return Panel(Group(*body), title=title, title_align="left")


def rate(
    model: Annotated[str | None, typer.Argument(help="Only this model's descriptions.")] = None,
    rater: Annotated[str | None, typer.Option(help="Your name (asked once when omitted).")] = None,
    skipped: Annotated[
        bool, typer.Option("--skipped", help="Go through the descriptions you skipped before.")
    ] = False,
    db: DbOpt = None,
) -> None:
    """The review queue in the terminal: each description you have not rated, with its evidence.

    Keys: 1-4 the labels, s skip (remembered, as in the web queue: not offered again until
    --skipped), c add a comment, q quit."""
    # The review queue's queries live in the web package, which imports FastAPI.
    from evaluation.web.review_queue import review_next, review_progress

    keys = {str(i + 1): label for i, label in enumerate(RATING_LABELS)}
    legend = (
        "  ".join(f"[bold]{k}[/] {v}" for k, v in keys.items())
        + "  [bold]s[/] skip  [bold]c[/] comment  [bold]q[/] quit"
    )
    with user_errors(), open_store(db) as store:
        if model is not None:
            store.get_model(model)
        if not rater:
            out.print("Your name as rater: ", end="")
            rater = (sys.stdin.readline() if not sys.stdin.isatty() else input()).strip()
        if not rater:
            raise HeadmapsError("a rater name is needed (--rater NAME)")
        if store.has_raters() and rater not in {r.name for r in store.list_raters() if r.active}:
            # Whoever can open the database can write it; the name must still be someone's.
            raise HeadmapsError(f"{rater!r} is not an active rater of this store (headmaps raters list)")
        out.print("Scale: " + "; ".join(f"{k} {v}: {escape(RATING_MEANINGS[v])}" for k, v in keys.items()))
        after, rated, passed = 0, 0, set()
        while True:
            found = review_next(store, rater, model, after, skipped=skipped)
            if found is None or found in passed:
                progress = review_progress(store, rater, model)
                left = (
                    f", {progress.skipped} skipped: `headmaps rate --skipped` to go through them"
                    if progress.skipped
                    else ""
                )
                out.print(f"Nothing more to rate ({progress.done} of {progress.total} rated{left}).")
                break
            progress = review_progress(store, rater, model)
            out.print(_panel(store, found, progress.done, progress.total))
            comment = None
            while True:
                key = _read_key(legend + " > ").lower()
                if key == "c":
                    out.print("Comment: ", end="")
                    comment = (sys.stdin.readline() if not sys.stdin.isatty() else input()).strip() or None
                    continue
                if key in keys or key in ("s", "q"):
                    break
                out.print(f"[red]unknown key {escape(repr(key))}[/]")
            if key == "q":
                out.print(f"Stopped: {rated} rated this session.")
                break
            if key == "s":
                store.skip_description(found, rater)
                passed.add(found)  # with --skipped, once round is enough
            else:
                store.add_rating(
                    RatingIn(description_id=found, rater=rater, label=keys[key], comment=comment)
                )
                rated += 1
                out.print(f"[green]saved[/] #{found}: {keys[key]}")
            after = found
