"""Heads side by side: ``/compare?model=M&heads=L1.H2,L3.H0`` (2 to 8 heads) shows each head's
top salient mappings, its current description, and one table of operation and attention-pattern
scores (rows the operations, columns the heads, each row's best marked); the same as JSON at
``/api/compare`` and the score table as CSV/JSON with ``format=``."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from describer.errors import InvalidValue
from describer.heads import head_name, parse_head
from evaluation.web.common import WebError, render, store_of
from evaluation.web.exports import table_response
from evaluation.web.queries import one_line
from evaluation.web.rating import blind_head, viewer_name
from store.records import HeadView

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["api"])
MAX_HEADS = 8
ROWS = 10
"""Salient rows shown per head."""


class ScoreRow(BaseModel):
    name: str
    kind: str
    """``operation`` (its relation score) or ``pattern``."""
    values: list[float | None]
    """One per head, in the comparison's order."""


class Comparison(BaseModel):
    model: str
    heads: list[HeadView]
    scores: list[ScoreRow]


def parse_heads(heads: str) -> list[tuple[int, int]]:
    wanted: list[tuple[int, int]] = []
    for part in (p for p in heads.split(",") if p.strip()):
        try:
            wanted.append(parse_head(part))
        except InvalidValue as exc:
            raise WebError(422, f"heads: {exc}") from None
    wanted = list(dict.fromkeys(wanted))  # the same head twice is shown once
    if not 2 <= len(wanted) <= MAX_HEADS:
        raise WebError(
            422, f"compare 2 to {MAX_HEADS} different heads, e.g. heads=L1.H2,L3.H0; got {len(wanted)}"
        )
    return wanted


def compare(request: Request, model: str, heads: str) -> Comparison:
    store = store_of(request)
    viewer = viewer_name(request)
    views = [blind_head(store.get_head(model, layer, head), viewer) for layer, head in parse_heads(heads)]
    names = list(dict.fromkeys(o.name for v in views for o in v.operations))
    by_head = [{o.name: o.relation for o in v.operations} for v in views]
    rows = [ScoreRow(name=n, kind="operation", values=[h.get(n) for h in by_head]) for n in sorted(names)]
    patterns = list(dict.fromkeys(p for v in views for p in v.patterns))
    rows += [ScoreRow(name=p, kind="pattern", values=[v.patterns.get(p) for v in views]) for p in patterns]
    return Comparison(model=model, heads=views, scores=rows)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    model: str = Query(description="The model"),
    heads: str = Query(description="Comma-separated heads, e.g. L1.H2,L3.H0"),
    format: str = "",  # noqa: A002 - the shared download parameter's name
) -> Response:
    result = compare(request, model, heads)
    names = [head_name(v.layer, v.head) for v in result.heads]
    if format:
        rows = [
            {"kind": r.kind, "name": r.name, **dict(zip(names, r.values, strict=True))} for r in result.scores
        ]
        return table_response(rows, ["kind", "name", *names], format, f"{model}-compare-{'-'.join(names)}")
    best = [
        max((i for i, v in enumerate(r.values) if v is not None), key=lambda i: r.values[i], default=None)
        for r in result.scores
    ]
    return render(
        request,
        "compare.html",
        result=result,
        names=names,
        best=best,
        rows=ROWS,
        heads=heads,
        one_line=one_line,
    )


@api_router.get("/compare", response_model=Comparison, summary="Two to eight heads side by side")
def api_compare(
    request: Request,
    model: str = Query(description="The model"),
    heads: str = Query(description="Comma-separated heads, e.g. L1.H2,L3.H0"),
) -> Comparison:
    return compare(request, model, heads)
