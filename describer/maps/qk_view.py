"""The static QK view of one head over the vocabulary: for its query tokens, the key tokens
their queries prefer (``describer.maps.qk`` defines the score; docs/qk.md the measurements).

Token representations (``source``): ``residual`` (default) is the context-free residual entering
the layer when the model reads ``[prefix, token]`` (``describer.maps.residual``), the
representation whose static scores agree best with the model's attention; computing it for the
whole vocabulary would be a forward pass per token, so the vocabulary is streamed with the
``linear`` proxy (a least-squares map from the embedding, fitted on a sample of tokens run
through the model) and each query's ``candidates`` best keys by the proxy are scored exactly.
``linear``, ``embed`` (the embedding, what layer 0 reads) and ``embed+mlp0`` are computed
directly for every token.

Query tokens are the user's, or the readable tokens whose scores spread most (standard
deviation over a reference sample of readable keys: their preferences are the most pronounced);
an "average query" row (the mean query vector over the sample) shows what the head's scores
favour whatever the query. Scores are also given as z, standard deviations above the query's
mean over the sample. Nothing ``vocab × vocab`` is built: the vocabulary is streamed in chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pydantic import BaseModel
from torch import Tensor

from describer.errors import HeadmapsError
from describer.maps.analyzer import Analyzer
from describer.maps.qk import HeadQK, RotaryMode, head_qk
from describer.maps.qk_check import Agreement, head_agreement
from describer.maps.residual import linear_maps, proxy_sample
from describer.maps.scan import merge_topk
from describer.maps.settings import AnalysisSettings

QK_SOURCES = ("residual", "linear", "embed", "embed+mlp0")
Progress = Callable[[str, int, int], None]

MEASURED: dict[str, dict[str, object]] = {
    # benchmarks/bench_qk.py (docs/qk.md): the median over heads of each head's median within-row
    # Spearman between its static scores and the model's attention log-probabilities on random
    # sequences, per source/rotary; "early" is residual/mean over layers 0-1 only.
    "gemma3_text": {
        "model": "gemma-3-270m",
        "position": 0.42,
        "shuffled": 0.00,
        "early": 0.74,
        "scores": {
            "residual/mean": 0.32,
            "residual/none": 0.26,
            "linear/mean": 0.27,
            "linear/none": 0.20,
            "embed/mean": 0.01,
            "embed/none": 0.01,
            "embed+mlp0/mean": 0.00,
            "embed+mlp0/none": 0.02,
        },
    },
    "qwen2": {
        "model": "qwen2.5-coder-0.5b-instruct",
        "position": 0.27,
        "shuffled": 0.00,
        "early": 0.42,
        "scores": {
            "residual/mean": 0.16,
            "residual/none": 0.15,
            "linear/mean": 0.05,
            "linear/none": 0.03,
            "embed/mean": 0.00,
            "embed/none": 0.00,
            "embed+mlp0/mean": 0.07,
            "embed+mlp0/none": 0.06,
        },
    },
}
MEASURED["gemma3"] = MEASURED["gemma3_text"]
WEAK, INFORMATIVE = 0.15, 0.45
"""Agreement below ``WEAK`` is called uninformative, below ``INFORMATIVE`` weak."""


def verdict(score: float) -> str:
    return "uninformative" if score < WEAK else "weak" if score < INFORMATIVE else "informative"


def family_note(family: str, source: str, rotary: str = "mean") -> str:
    """What the measurement says of the view for this family, source and rotary, in one sentence."""
    m = MEASURED.get(family)
    if m is None:
        return (
            f"not measured for {family} (docs/qk.md): the scores are exact for the token terms they keep, "
            "but how well they order a head's keys in context is unknown; see this head's agreement"
        )
    score = float(m["scores"][f"{source}/{rotary}"])  # type: ignore[index]
    said = (
        f"on {m['model']} the median agreement over heads is {score:.2f} with {source}/{rotary} "
        f"(layers 0-1: {m['early']:.2f} with residual/mean; position alone {m['position']:.2f}, "
        f"shuffled {m['shuffled']:.2f}; docs/qk.md)"
    )
    word = verdict(score)
    if word == "uninformative":
        return f"uninformative: {said}; outside the first layers these scores are noise"
    if word == "weak":
        return f"weak: {said}; read them as a tendency of the head's scores, not as what it attends to in context"
    return f"informative: {said}"


class QKKey(BaseModel):
    token: str
    token_id: int
    score: float
    """The static attention logit."""
    z: float
    """Standard deviations above the query's mean score over the reference sample of keys."""


class QKQuery(BaseModel):
    token: str
    token_id: int | None
    """None for the average query."""
    spread: float
    """Standard deviation of this query's scores over the reference sample of keys."""
    keys: list[QKKey]


class QKView(BaseModel):
    model: str
    family: str
    layer: int
    head: int
    source: str
    """The token representation, in words."""
    rotary: str
    """The rotary handling, in words."""
    sample: int
    """Readable tokens in the reference sample (spreads, z, the average query)."""
    queries: list[QKQuery]
    average: QKQuery
    note: str
    """What the measurement (docs/qk.md) says of this view for the family and source."""
    agreement: dict[str, float | int | str] | None = None
    """This head's own agreement on random sequences (``describer.maps.qk_check``), if measured."""


class Representation:
    """Token rows for one source: ``cheap`` for vocabulary chunks, ``exact`` for given ids."""

    def __init__(
        self, analyzer: Analyzer, source: str, progress: Progress | None = None, sweep: bool = False
    ) -> None:
        self.analyzer, self.source = analyzer, source
        self.sweep = sweep and source == "residual"
        """Run every vocabulary chunk through the model (exact, no proxy; for a GPU)."""
        self.mask = analyzer.readable_mask()
        self.sample = proxy_sample(analyzer, self.mask)
        self.maps = None
        if source == "linear" or (source == "residual" and not self.sweep):
            self.maps = linear_maps(analyzer, analyzer.residual, self.mask, progress)

    @property
    def approximate(self) -> bool:
        return self.source == "residual" and not self.sweep

    def cheap(self, layer: int, ids: Tensor | slice) -> Tensor:
        if self.sweep:
            if isinstance(ids, slice):
                ids = torch.arange(ids.start or 0, ids.stop)
            step = self.analyzer.residual.batch_size
            with self.analyzer.adapter.running():  # the blocks loaded once for the sweep
                return torch.cat(
                    [
                        self.analyzer.residual.forward(ids[i : i + step], layer)[:, layer]
                        for i in range(0, len(ids), step)
                    ]
                )
        if self.maps is None:
            return self.analyzer.source_rows(layer, ids)
        return self.analyzer._embed(ids) @ self.maps[layer][:-1] + self.maps[layer][-1]

    def exact(self, layer: int, ids: Tensor | slice) -> Tensor:
        return self.analyzer.source_rows(layer, ids) if self.source == "residual" else self.cheap(layer, ids)

    def describe(self, candidates: int) -> str:
        if self.source == "residual":
            prefix = self.analyzer.residual.prefix_text
            how = (
                "every token run through the model (exact)"
                if self.sweep
                else f"keys ranked exactly among each query's {candidates} best by the linear proxy "
                f"and a sample of {len(self.sample)} tokens"
            )
            return f"residual: the stream entering the layer when the model reads [{prefix!r}, token]; {how}"
        return {
            "linear": "linear: a least-squares map from the embedding to the context-free residual",
            "embed": "embed: the token embedding (what layer 0 reads)",
            "embed+mlp0": "embed+mlp0: the embedding plus block 0's MLP of it (weights only)",
        }[self.source]


def make_representation(
    adapter: object,
    tokenizer: object,
    source: str,
    device: torch.device | str,
    progress: Progress | None = None,
    sweep: bool = False,
) -> Representation:
    if source not in QK_SOURCES:
        raise HeadmapsError(
            f"unknown --source {source!r} for the QK view; use one of: {', '.join(QK_SOURCES)}"
        )
    kind = "residual" if source in ("residual", "linear") else source
    analyzer = Analyzer(adapter, tokenizer, AnalysisSettings(source=kind), device)  # type: ignore[arg-type]
    return Representation(analyzer, source, progress, sweep)


def resolve_queries(tokenizer: object, texts: Sequence[str]) -> list[int]:
    """Each text as one token id, or an error naming the pieces it splits into."""
    ids = []
    for text in texts:
        pieces = tokenizer.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
        if len(pieces) != 1:
            shown = [tokenizer.decode([p]) for p in pieces]  # type: ignore[attr-defined]
            raise HeadmapsError(f"--query {text!r} is not one token (it tokenizes to {shown})")
        ids.append(int(pieces[0]))
    return ids


def _spans(vocab: int, step: int) -> list[tuple[int, int]]:
    return [(start, min(start + step, vocab)) for start in range(0, vocab, step)]


def _pick_queries(
    rep: Representation, qk: HeadQK, layer: int, cov: Tensor, n: int, chunk: int, progress: Progress | None
) -> list[int]:
    """The ``n`` readable tokens with the largest spread ``sqrt(q C qᵀ)``: candidates by the cheap
    representation over the vocabulary, then ranked by the exact one."""
    a, dev = rep.analyzer, rep.analyzer.device
    m = n * 4 if rep.approximate else n
    best_v = torch.full((1, 0), float("-inf"), device=dev)
    best_i = torch.zeros((1, 0), dtype=torch.long, device=dev)
    spans = _spans(a.vocab_size, chunk)
    for i, (start, stop) in enumerate(spans):
        q = qk.queries(rep.cheap(layer, slice(start, stop))).double()
        spread = ((q @ cov) * q).sum(-1).clamp_min(0).sqrt().float()
        spread = spread.masked_fill(~rep.mask[start:stop], float("-inf"))
        best_v, best_i = merge_topk(best_v, best_i, spread[None], start, m)
        if progress:
            progress("query spreads", i + 1, len(spans))
    cand = best_i[0][torch.isfinite(best_v[0])]
    if not rep.approximate:
        return cand.tolist()
    q = qk.queries(rep.exact(layer, cand)).double()
    exact = ((q @ cov) * q).sum(-1)
    return cand[exact.argsort(descending=True)[:n]].tolist()


@torch.inference_mode()
def qk_view(
    rep: Representation,
    layer: int,
    head: int,
    *,
    query_ids: Sequence[int] | None = None,
    n_queries: int = 10,
    top_k: int = 10,
    candidates: int = 128,
    rotary: RotaryMode = "mean",
    chunk: int = 8192,
    progress: Progress | None = None,
) -> tuple[list[QKQuery], QKQuery, HeadQK]:
    """Each query's ``top_k`` preferred readable keys, and the average query's (see the module)."""
    a = rep.analyzer
    qk = head_qk(a.adapter, layer, head, rotary, device=a.device)
    sample = rep.sample
    if len(sample) < 2:
        raise HeadmapsError("the tokenizer has fewer than two readable tokens")
    sample_rows = rep.exact(layer, sample)
    k_sample = qk.keys(sample_rows)
    q_avg = qk.queries(sample_rows).mean(0, keepdim=True)
    if query_ids is None:
        cov = torch.cov(k_sample.double().T).reshape(k_sample.shape[1], -1)
        query_ids = _pick_queries(rep, qk, layer, cov, n_queries, chunk, progress)
    chosen = [int(t) for t in query_ids]
    Q = torch.cat(
        [qk.queries(rep.exact(layer, torch.tensor(chosen, dtype=torch.long, device=a.device))), q_avg]
    )
    # Each query's best keys by the cheap representation, streamed over the vocabulary.
    n_best = max(candidates, top_k) if rep.approximate else top_k
    best_v = torch.full((len(Q), 0), float("-inf"), device=a.device)
    best_i = torch.zeros((len(Q), 0), dtype=torch.long, device=a.device)
    spans = _spans(a.vocab_size, chunk)
    for i, (start, stop) in enumerate(spans):
        s = qk.scores(Q, qk.keys(rep.cheap(layer, slice(start, stop))))
        best_v, best_i = merge_topk(
            best_v, best_i, s.masked_fill(~rep.mask[start:stop], float("-inf")), start, n_best
        )
        if progress:
            progress("key scores", i + 1, len(spans))
    if rep.approximate:
        # Rank the candidates (and the sample, already computed) by their exact keys.
        pool = torch.unique(torch.cat([best_i[torch.isfinite(best_v)], sample]))
        exact = qk.scores(Q, qk.keys(rep.exact(layer, pool)))
        best_v, j = exact.topk(min(top_k, len(pool)), dim=1)
        best_i = pool[j]
    s_sample = qk.scores(Q, k_sample).double()
    mean, std = s_sample.mean(1), s_sample.std(1).clamp_min(1e-12)
    rows = []
    for r in range(len(Q)):
        keys = [
            QKKey(
                token=a.token_text(int(t)), token_id=int(t), score=float(v), z=float((v - mean[r]) / std[r])
            )
            for t, v in zip(best_i[r, :top_k], best_v[r, :top_k], strict=True)
            if torch.isfinite(v)
        ]
        avg = r == len(Q) - 1
        rows.append(
            QKQuery(
                token="(average query)" if avg else a.token_text(chosen[r]),
                token_id=None if avg else chosen[r],
                spread=float(std[r]),
                keys=keys,
            )
        )
    return rows[:-1], rows[-1], qk


def check(rep: Representation, layer: int, head: int, qk: HeadQK) -> Agreement:
    """This head's agreement with the model on random sequences, with this representation."""
    return head_agreement(rep.analyzer.adapter, rep.analyzer.tokenizer, layer, head, qk, rep.exact)
