"""What a prompt template is rendered from: a head's salient table, the relations the analyzer
measured on it (``describer.maps.relations``) stated as facts, and its best operation scores.

The same evidence comes from a head in the store (``head_evidence``) or from a mapping table
read from a ``--mappings`` file (``table_evidence``), so both are described by one prompt.

A stored head shows only its first ``SHOWN_SOURCES`` salient rows (the paper's 15): analysis
stores more (``STORED_SOURCES``), and the rows a prompt did not show are what the simulation
scorer tests the description on. Relations stored for all rows are measured again on the shown
ones, so no fact counts rows the prompt does not show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from describer.errors import HeadmapsError
from describer.mapping_tables import MappingTable
from describer.maps.patterns import PATTERNS, notable_patterns, pattern_fact
from describer.maps.relations import RelationFact, relation_facts
from describer.maps.settings import SHOWN_SOURCES
from store.labels import CATEGORY_MEANINGS
from store.records import HeadView

TOP_OPERATIONS = 5
"""Operation scores shown to the LLM by the evidence prompt, best first."""
MIN_SCORE = 0.05
"""Operation scores (relation or suppression) below this are not shown."""
CONTEXT_PREFIX = "script:"
"""Relations that say what the tokens are, not what the head does to them."""
MAX_FACTS = 3
"""Relation facts shown, strongest first: more only repeats weaker versions of the first."""
COVERED = 0.5
"""A head is covered when one relation holds on at least this share of its rows: the verdict
the prompt states ("a relation covers most rows")."""
_KIND_ORDER = (
    "operation:",
    "inflection:",
    "gender:",
    "opposite",
    "successor",
    "predecessor",
    "case:",
    "copy",
    "suffix:",
    "stem",
    "constant",
)
"""At equal row counts the named relation comes first: "singular → plural" says more than
"adds -s" about the same rows."""


def _kind_rank(relation: str) -> int:
    for rank, prefix in enumerate(_KIND_ORDER):
        if relation.startswith(prefix):
            return rank
    return len(_KIND_ORDER)


def _facts(facts: Iterable[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(relations, context) as template rows ``{relation, text, rows, n_rows}``."""
    relations: list[dict[str, Any]] = []
    context: list[dict[str, Any]] = []
    for fact in facts:
        row = {
            "relation": fact.relation,
            "label": fact.label,
            "text": f"{fact.rows} of {fact.n_rows} rows{_share(fact.rows, fact.n_rows)}: {fact.label}",
            "rows": fact.rows,
            "n_rows": fact.n_rows,
        }
        (context if fact.relation.startswith(CONTEXT_PREFIX) else relations).append(row)
    relations.sort(key=lambda r: (-r["rows"] / max(r["n_rows"], 1), _kind_rank(r["relation"])))
    seen: set[str] = set()  # one line per label: a built-in operation and a rule may agree
    relations = [r for r in relations if not (r["label"] in seen or seen.add(r["label"]))]
    strong = [r for r in relations if r["rows"] >= COVERED * r["n_rows"]]
    # When some relation covers most rows, the weaker ones are noise a small model picks up.
    return (strong or relations)[:MAX_FACTS], context[:2]


def _share(rows: int, n_rows: int) -> str:
    """The count in words, which a small model reads more reliably than the numbers."""
    if n_rows and rows == n_rows:
        return " (all rows)"
    if rows >= COVERED * n_rows:
        return " (most rows)"
    return " (some rows)" if rows >= 0.25 * n_rows else " (few rows)"


def _base(
    name: str,
    rows: Sequence[tuple[str, Sequence[str]]],
    facts: Sequence[Any],
    operations: list[dict[str, Any]],
) -> dict[str, Any]:
    relations, context = _facts(facts)
    # For "no relation holds for more than N of M rows": the best weak relation, if any.
    weak = relation_facts(rows, min_rows=1, min_fraction=0.0) if not relations else []
    most = max((f.rows for f in weak if not f.relation.startswith(CONTEXT_PREFIX)), default=0)
    return {
        "name": name,
        "salient": [{"token": token, "mappings": [{"token": out} for out in outs]} for token, outs in rows],
        "relations": relations,
        "context": context,
        "most_rows": max(most, 1),
        "covered": bool(relations) and relations[0]["rows"] >= COVERED * relations[0]["n_rows"],
        "operations": operations,
        "attention": [],
        "categories": dict(CATEGORY_MEANINGS),
    }


def attention_evidence(patterns: dict[str, float]) -> list[dict[str, Any]]:
    """The head's notable attention-pattern scores (each pattern's ``notable`` threshold in
    ``describer.maps.patterns``) as template rows ``{name, label, score, text}``, strongest first."""
    return [
        {"name": name, "label": PATTERNS[name].label, "score": value, "text": pattern_fact(name, value)}
        for name, value in notable_patterns(patterns)
    ]


def head_evidence(
    view: HeadView,
    n_layers: int,
    n_heads: int,
    top_operations: int = TOP_OPERATIONS,
    shown_sources: int = SHOWN_SOURCES,
) -> dict[str, Any]:
    """What a template may use for one stored head: its first ``shown_sources`` salient rows.
    The older variables (model, layer, head, n_layers, n_heads, logits and amplification) stay,
    for the older templates."""
    if not view.salient:
        raise HeadmapsError(f"{view.model} head {view.layer}.{view.head} has no stored salient mappings")
    shown = view.salient[:shown_sources]
    rows = [(s.token, [m.token for m in s.mappings]) for s in shown]
    stored = list(getattr(view, "relations", None) or [])
    # Stored relations count all stored rows; measured on more rows than shown they would state
    # rows the prompt hides (and leak the held-out ones), so they are measured again on the
    # shown rows (with the built-in operations: a user operation's pairs are not in the view).
    # Analyses stored before relations have none either.
    facts: Sequence[Any] = (
        stored if stored and all(f.n_rows == len(rows) for f in stored) else relation_facts(rows)
    )
    # Scores near zero say nothing and crowd the prompt; the template says when none is left.
    strong = [o for o in view.operations if max(o.relation, o.suppression) >= MIN_SCORE]
    operations = [
        {"name": o.name, "category": o.category, "score": o.relation, "suppression": o.suppression, "k": o.k}
        for o in strong[:top_operations]
    ]
    data = _base(f"head {view.layer}.{view.head} of {view.model}", rows, facts, operations)
    data.update(
        attention=attention_evidence(dict(getattr(view, "patterns", None) or {})),
        patterns=dict(getattr(view, "patterns", None) or {}),
        model=view.model,
        layer=view.layer,
        head=view.head,
        n_layers=n_layers,
        n_heads=n_heads,
        salient=[
            {
                "token": s.token,
                "amplification": s.amplification,
                "mappings": [{"token": m.token, "logit": m.logit} for m in s.mappings],
            }
            for s in shown
        ],
    )
    return data


def table_evidence(
    table: MappingTable, operations: Iterable[tuple[str, Sequence[tuple[str, str]]]] | None = None
) -> dict[str, Any]:
    """What a template may use for a table from a ``--mappings`` file: no model, no position,
    no logits, no operation scores; the relations are measured here."""
    rows = [(token, list(outs)) for token, outs in table.rows]
    facts: list[RelationFact] = relation_facts(rows, operations)
    return _base(table.name, rows, facts, [])
