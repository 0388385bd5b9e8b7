"""``headmaps search``'s output: a table (or JSON) of hits with the scores filtered on and,
for a search by tokens, the matching rows."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from describer.cli.console import out, warn
from describer.heads import head_name
from describer.tokens import visible

if TYPE_CHECKING:
    from evaluation.search_models import Filters, SearchResult

JSON_FIELDS = {"description_id", "model", "layer", "head", "text", "score"}
"""A hit's fields in ``--json`` (a search by analysis adds scores, matches and best_rank)."""


def print_search(result: SearchResult, filters: Filters, as_json: bool) -> None:
    names = filters.shown
    heads = result.mode == "heads"
    if as_json:
        fields = set(JSON_FIELDS)
        if names:
            fields.add("scores")
        if filters.tokens.active:
            fields |= {"matches", "best_rank"}
        body = {
            "results": [h.model_dump(include=fields) for h in result.results],
            "mode": result.mode,
            "offset": result.offset,
            "more": result.more,
            **({"total": result.total} if result.total is not None else {}),
            **({"note": result.note} if result.note else {}),
        }
        sys.stdout.write(json.dumps(body, ensure_ascii=False) + "\n")
        return
    if result.note:
        warn(result.note)
    if not result.results:
        out.print("No head passes the filters." if heads else "No description matches.")
        return
    first, last = result.offset + 1, result.offset + len(result.results)
    title = (
        f"{result.total} heads ({first}-{last} shown)"
        if heads
        else f"results {first}-{last}, ranked by {result.mode}"
    )
    if result.more:
        title += f"; next page: --offset {last}"
    table = Table(title=title, title_justify="left")
    columns = ["head", *([] if heads else ["score"]), *names]
    if filters.tokens.active:
        columns += ["best rank", "matching rows"]
    for column in (*columns, "category", "description"):
        table.add_column(escape(column), overflow="fold")
    for h in result.results:
        cells = [f"{escape(h.model)} {head_name(h.layer, h.head)}"]
        if not heads:
            cells.append(f"{h.score:.3g}")
        cells += ["—" if h.scores.get(n) is None else f"{h.scores[n]:.3f}" for n in names]
        if filters.tokens.active:
            rows = [
                f"#{m.rank} {visible(m.source)}" + (f" → {visible(m.target)}" if m.target is not None else "")
                for m in h.matches
            ]
            cells += [str(h.best_rank), escape("\n".join(rows))]
        table.add_row(*cells, h.category or "", escape(h.text) if h.description_id else "(not described)")
    out.print(table)
