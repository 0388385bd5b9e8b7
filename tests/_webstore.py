"""A small store for the web, search and review tests: a 3×4 model with scores, relations and
descriptions (one of each hostile HTML), filled through the Store API."""

from __future__ import annotations

from benchmarks.rating_load import serving
from store import Store
from store.records import RelationIn
from tests._storedb import analysis, definitions, description, model_info

XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2"><b id="injected">bold</b>'
"""A description text that would run script and add elements if it were not escaped."""

CAPITALS = "maps nations to their capital cities"

RELATIONS = {
    (1, 2): [
        RelationIn(relation="operation:capital", label="country → capital", rows=2, n_rows=3,
                   examples=[(" France", " Paris"), ("▁Japan", "▁Tokyo")]),
        RelationIn(relation="script:inputs:latin", label="inputs are mostly Latin-script words", rows=3, n_rows=3),
    ],
    (0, 1): [RelationIn(relation="copy", label="maps to itself (or a case/space variant)", rows=3, n_rows=3,
                        examples=[(" w010", " w010")])],
    (2, 0): [RelationIn(relation="copy", label=XSS, rows=1, n_rows=3, examples=[(XSS, XSS)])],
}  # fmt: skip
"""Relation evidence of three heads (one of them hostile: a constant's label quotes a token)."""


def fill(store: Store) -> dict[str, int]:
    """The test store; returns description ids by name."""
    info = model_info("tiny", n_layers=3, n_heads=4)
    store.save_analysis(
        info, analysis(info, ops=("copy", "capital")), settings_key="k1", operations=definitions()
    )
    store.save_relations("tiny", RELATIONS)
    ids = {
        "capital": store.add_description(
            description(
                layer=1,
                head=2,
                pattern=CAPITALS,
                inputs="country names",
                category="knowledge_recalling",
                reasoning="France goes to Paris and Japan to Tokyo.",
            )
        ),
        "copy": store.add_description(
            description(
                layer=0,
                head=1,
                pattern="copies the current token",
                inputs="any word",
                category="in_context_identification",
                reasoning="Each token maps to itself.",
            )
        ),
        "tense": store.add_description(
            description(
                layer=2,
                head=3,
                pattern="turns verbs into their past tense",
                inputs="verbs",
                category="expression_preparation",
                reasoning="walk goes to walked.",
            )
        ),
        "xss": store.add_description(
            description(
                layer=2,
                head=0,
                pattern=XSS,
                inputs=XSS,
                reasoning=XSS,
                category="unclear",
                unclear=True,
                status="unclear",
                raw_response=XSS,
                rendered_prompt=XSS,
                llm_model=XSS,
                prompt_name=XSS,
            )
        ),
    }
    return ids


live_server = serving
"""The web app over the store at ``url``, served by uvicorn on a free loopback port in a thread;
yields its base URL (the load benchmark's server)."""
