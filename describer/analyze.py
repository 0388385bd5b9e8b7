"""The analyze job with the store: what the store lacks for a model, computed by
``describer.maps`` and stored with the model's record and the operations' definitions.

Idempotent: work already stored for the model and the analysis settings is skipped; with nothing
missing the model is not even loaded."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from describer.errors import HeadmapsError
from describer.maps.jobs import Warn, analyze_model, pick_device
from describer.maps.loading import LoadedModel, Weights, load_model, resolve
from describer.maps.operations import Operation, builtin_operations
from describer.maps.patterns import PatternSettings
from describer.maps.relations import relation_facts
from describer.maps.results import AnalysisResult
from describer.maps.settings import SHOWN_SOURCES, STORED_SOURCES, SourceChoice
from store import Store, operation_hash
from store.records import AnalysisIn, ModelInfo, OperationIn, PatternsIn, RelationIn

Progress = Callable[[str, int, int], None]


def model_info(loaded: LoadedModel) -> ModelInfo:
    """What the store records about a loaded model: its name, source, hash and shapes."""
    a = loaded.adapter
    return ModelInfo(
        name=loaded.name,
        source=loaded.spec.source,
        kind=loaded.spec.kind,
        content_hash=loaded.content_hash,
        family=loaded.family,
        n_layers=a.n_layers,
        n_heads=a.n_heads,
        n_kv_heads=a.n_kv_heads,
        d_model=a.d_model,
        vocab_size=a.vocab_size,
    )


def settings_key(
    family: str,
    choice: SourceChoice | None = None,
    top_tokens: int = STORED_SOURCES,
    top_mappings: int = 5,
    dtype: str = "float32",
) -> str:
    """The store key of the analysis settings ``analyze`` would use for a model of ``family``."""
    return (
        (choice or SourceChoice())
        .settings(family, top_tokens=top_tokens, top_mappings=top_mappings, dtype=dtype)
        .key()
    )


def pending_work(
    store: Store, name: str, key: str, operations: Sequence[Operation], k: int | None
) -> tuple[bool, list[Operation]]:
    """(salient mappings still to compute, operations still to score) for model ``name``."""
    done = store.stored_operation_keys(name, key, k)
    todo = [op for op in operations if (op.name, operation_hash(op.pairs)) not in done]
    return not store.has_analysis(name, key), todo


def stored_family(store: Store, name: str) -> str | None:
    try:
        return store.get_model(name).family
    except HeadmapsError:
        return None


RelationOperations = list[tuple[str, tuple[tuple[str, str], ...]]]


def relation_operations(operations: Iterable[Operation | OperationIn]) -> RelationOperations:
    """The operations whose pairs the relation evidence checks: every built-in one, and the
    user's among ``operations`` (one named like a built-in operation replaces it)."""
    chosen = {op.name: op.pairs for op in builtin_operations().values()}
    for op in operations:
        if op.origin != "builtin":
            chosen[op.name] = op.pairs
    return [(name, tuple((s, t) for s, t in pairs)) for name, pairs in chosen.items()]


def head_relations(
    rows: Sequence[tuple[str, Sequence[str]]], operations: RelationOperations
) -> list[RelationIn]:
    """The relations a head's salient rows satisfy, as the store takes them: measured on the
    rows a prompt shows (``SHOWN_SOURCES``), so no stored fact counts a held-out row."""
    return [
        RelationIn(
            relation=f.relation, label=f.label, rows=f.rows, n_rows=f.n_rows, examples=list(f.examples)
        )
        for f in relation_facts(list(rows)[:SHOWN_SOURCES], operations)
    ]


def backfill_relations(
    store: Store, model: str, *, settings_key: str | None = None, replace: bool = False
) -> int:
    """Compute and store the relations of every head of ``model``'s current analysis (or
    ``settings_key``'s) when it has salient rows but no relations (stored before they existed);
    with ``replace``, recompute them anyway (after new operations were added). Returns the
    number of heads written."""
    if not replace and not store.needs_relations(model, settings_key):
        return 0
    key, tables = store.salient_tables(model, settings_key)
    if not tables:
        return 0
    operations = relation_operations(store.analysis_operations(model, key))
    relations = {head: head_relations(rows, operations) for head, rows in tables.items()}
    return store.save_relations(model, relations, settings_key=key, replace=replace)


def save_result(
    store: Store,
    loaded: LoadedModel,
    result: AnalysisResult,
    key: str,
    operations: Sequence[Operation],
    k: int | None,
) -> int | None:
    """Store an ``analyze_model`` result with its model, operation definitions (with each head's
    outcome on every pair), each head's relations (checked against the built-in operations and
    the user's) and the attention-pattern scores; returns the analysis id (None when the result holds pattern scores only)."""
    settings = {
        name: value
        for name, value in result.settings.items()
        if name not in ("device", "weights", "weights_note")
    }
    definitions = [
        OperationIn(
            name=op.name,
            category=op.category,
            pairs=list(op.pairs),
            origin="builtin" if op.origin == "builtin" else "user",
            source_file=None if op.origin == "builtin" else op.origin,
        )
        for op in operations
        if op.name in result.operations
    ]
    skipped = {op.name: operation_hash(op.pairs) for op in operations if op.name in result.skipped_operations}
    checked = relation_operations(operations)
    heads = [
        {
            **h.model_dump(),
            "relations": head_relations(
                [(s.token, [m.token for m in s.mappings]) for s in h.salient], checked
            ),
        }
        for h in result.heads
    ]
    # The per-pair outcomes are arrays that ``model_dump`` leaves out; the store takes them as they are.
    scores = {
        name: {**s.model_dump(), "pairs": s.pairs, "ranks": s.ranks, "suppressed_ranks": s.suppressed_ranks}
        for name, s in result.operations.items()
    }
    data = AnalysisIn.model_validate(
        {
            **result.model_dump(),
            "heads": heads,
            "operations": scores,
            "settings": settings,
            "skipped_operations": skipped,
        }
    )
    save_patterns(store, loaded, result)
    if not result.heads and not result.operations:
        return None  # patterns only: no MAPS analysis was run
    return store.save_analysis(
        model_info(loaded), data, settings_key=key, operations=definitions, default_k=k is None
    )


def save_patterns(store: Store, loaded: LoadedModel, result: AnalysisResult) -> None:
    """Store the result's attention-pattern scores, when it has them."""
    if result.patterns is None:
        return
    measured = PatternSettings.model_validate(result.patterns.settings)
    store.save_patterns(
        model_info(loaded),
        PatternsIn(settings=result.patterns.settings, scores=result.patterns.scores),
        settings_key=measured.key(),
    )


@dataclass
class Analyzed:
    """What ``analyze_and_store`` did."""

    model: str
    """The model's name in the store."""
    result: AnalysisResult | None
    """None: everything asked for was stored already (the model was not loaded)."""
    settings_key: str | None = None
    analysis_id: int | None = None
    """None when nothing was stored (no store given)."""


def analyze_and_store(
    store: Store | None,
    model: str | None,
    operations: Sequence[Operation],
    *,
    top_tokens: int = STORED_SOURCES,
    top_mappings: int = 5,
    choice: SourceChoice | None = None,
    device: str = "auto",
    k: int | None = None,
    everything: bool = False,
    patterns: PatternSettings | None = PatternSettings(),  # noqa: B008  (frozen, so shareable)
    weights: Weights = "stream",
    dtype: str = "float32",
    progress: Progress | None = None,
    warn: Warn = print,
) -> Analyzed:
    """Salient operations of every head, the scores of ``operations`` and the attention-pattern
    scores (unless ``patterns`` is None), for what ``store`` lacks (all of it with ``everything``,
    or without a store), stored when there is a store."""
    name = resolve(model).name
    if store is not None and not everything:
        family = stored_family(store, name)
        if family is not None:
            key = settings_key(family, choice, top_tokens, top_mappings, dtype)
            need_salient, todo = pending_work(store, name, key, operations, k)
            need_patterns = patterns is not None and not store.has_patterns(name, patterns.key())
            if not need_salient and not todo and not need_patterns:
                backfill_relations(store, name, settings_key=key)
                return Analyzed(name, None, key)
    device = pick_device(device)
    loaded = load_model(model, device=device, weights=weights, dtype=dtype)
    if loaded.note:
        warn(loaded.note)
    need_salient, todo, need_patterns = True, list(operations), patterns is not None
    key = None
    if store is not None:
        key = settings_key(loaded.family, choice, top_tokens, top_mappings, dtype)
        if not everything:
            need_salient, todo = pending_work(store, loaded.name, key, operations, k)
            need_patterns = patterns is not None and not store.has_patterns(loaded.name, patterns.key())
            if need_salient and not todo:
                todo = list(operations)  # salient mappings are computed along with some operation
    result = analyze_model(
        model,
        todo,
        top_tokens=top_tokens,
        top_mappings=top_mappings,
        choice=choice,
        device=device,
        k=k,
        progress=progress,
        warn=warn,
        loaded=loaded,
        with_salient=need_salient,
        patterns=patterns if need_patterns else None,
        dtype=dtype,
    )
    if store is None:
        return Analyzed(loaded.name, result)
    analysis_id = save_result(store, loaded, result, key, todo, k)
    # Salient rows stored before: their relations predate these operations (or are missing).
    new_user_operations = not need_salient and any(op.origin != "builtin" for op in todo)
    backfill_relations(store, loaded.name, settings_key=key, replace=new_user_operations)
    return Analyzed(loaded.name, result, key, analysis_id)


def ensure_analysis(
    store: Store,
    model: str | None,
    *,
    device: str = "auto",
    progress: Progress | None = None,
    warn: Warn = print,
) -> str:
    """The stored model name, analysing (every built-in operation, default settings, attention
    patterns) and storing the model first if the store lacks it; an analysis stored before
    relation evidence existed gets its relations computed, one stored before pattern scores
    existed gets them measured."""
    name = resolve(model).name
    analysed = False
    with contextlib.suppress(HeadmapsError):  # not stored yet
        summary = store.get_model(name)
        analysed = summary.heads >= summary.n_layers * summary.n_heads
    patterns = PatternSettings()
    if analysed:
        backfill_relations(store, name)
        if store.has_patterns(name, patterns.key()):
            return name
    loaded = load_model(model, device=pick_device(device), weights="stream")
    operations = [] if analysed else list(builtin_operations().values())
    result = analyze_model(
        model,
        operations,
        device=device,
        progress=progress,
        warn=warn,
        loaded=loaded,
        with_salient=not analysed,
        patterns=patterns,
    )
    save_result(store, loaded, result, settings_key(loaded.family), operations, None)
    return name
