"""MAPS: what each attention head's OV circuit does, read from the weights.

A head maps a source token ``s`` to vocabulary logits ``rep(s) @ W_V @ W_O @ U`` (Elhelo &
Geva, 2024). Two questions are answered here:

- *operation scores*: for an operation's (source, target) pairs, the fraction of pairs whose
  target is among the top-k tokens of the head's mapping of the source (relation score),
  and the same for the negated mapping (suppression score);
- *salient operations*: the source tokens the head amplifies most (``‖x W_VO‖ / ‖x‖``) and
  the tokens each one is mapped to.

Nothing here materialises a ``d×d`` W_VO or a full vocabulary row per head: value
projections are shared by the heads of a key/value group, amplification uses an
``hd×hd`` factor of each head's W_O, vocabulary logits are streamed in chunks, and a pair
stops being scored as soon as enough tokens have beaten its target on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from describer.maps.adapters.base import Adapter
from describer.maps.operations import TokenizedOperation
from describer.maps.pairs import flatten_pairs, pair_scores
from describer.maps.readable import readable, special_ids
from describer.maps.residual import ResidualSource, residual_salient
from describer.maps.results import HeadSalient, MappedToken, OperationScores, SalientToken
from describer.maps.settings import AnalysisSettings

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; called as work advances."""


@dataclass
class _Layer:
    norm: Callable[[Tensor], Tensor] | None
    W_V: Float[Tensor, "d kv_hd"]
    W_O: Float[Tensor, "n_heads hd d"]
    amp_factor: Float[Tensor, "n_kv hd g_hd"]
    """Per key/value group, ``[F_h1 | F_h2 | …]`` with ``‖s W_O_h‖ = ‖s F_h‖``."""


class Analyzer:
    """MAPS over one model's weights; holds the per-layer matrices on ``device``."""

    def __init__(
        self,
        adapter: Adapter,
        tokenizer: object,
        settings: AnalysisSettings,
        device: str | torch.device = "cpu",
        chunk_elements: int = 1 << 25,
    ) -> None:
        self.adapter = adapter
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = torch.device(device)
        self.chunk_elements = chunk_elements
        """Budget, in floats, for one block of streamed logits."""
        a = adapter
        self.n_layers, self.n_heads, self.n_kv, self.hd = a.n_layers, a.n_heads, a.n_kv_heads, a.head_dim
        self.vocab_size = a.vocab_size
        self._embed_weight = a.embedding_module().weight
        self._embed_scale = 1.0
        if a.embedding_scale() != 1.0:
            self._embed_scale = float(torch.tensor(a.embedding_scale(), dtype=self._embed_weight.dtype))
        self._U = a.unembedding_module().weight  # [vocab, d]
        final = a.final_norm()
        self._U_scale = (final.weight if settings.fold_norms else torch.ones_like(final.weight)).to(
            self.device
        )
        self._U_center = settings.fold_norms and final.kind == "layer"
        self.layers = [self._prepare_layer(i) for i in range(self.n_layers)]
        self._source_cache: Tensor | None = None
        self.residual = ResidualSource(a, tokenizer, self.device) if settings.source == "residual" else None
        self._readable: Tensor | None = None
        self._token_text: list[str] | None = None

    def _prepare_layer(self, index: int) -> _Layer:
        lw = self.adapter.layer(index)
        W_O = (lw.W_O_folded() if self.settings.fold_norms else lw.W_O).to(self.device)
        W_V = lw.W_V.to(self.device)
        group = self.n_heads // self.n_kv
        factors = []
        for kv in range(self.n_kv):
            per_head = []
            for h in range(kv * group, (kv + 1) * group):
                # W_O_h^T = Q R, so ‖s W_O_h‖ = ‖s R^T‖ with an hd×hd factor instead of hd×d.
                _, r = torch.linalg.qr(W_O[h].T.double())
                per_head.append(r.T.float())
            factors.append(torch.cat(per_head, dim=1))
        return _Layer(
            norm=lw.attn_norm if self.settings.attn_norm else None,
            W_V=W_V.permute(1, 0, 2).reshape(W_V.shape[1], -1),
            W_O=W_O,
            amp_factor=torch.stack(factors),
        )

    # --- vocabulary -----------------------------------------------------------------------
    def token_text(self, token_id: int) -> str:
        return self._texts()[token_id]

    def _texts(self) -> list[str]:
        if self._token_text is None:
            ids = [[i] for i in range(self.vocab_size)]
            self._token_text = list(self.tokenizer.batch_decode(ids))  # type: ignore[attr-defined]
        return self._token_text

    def readable_mask(self) -> Tensor:
        """True for tokens that read as text: not special, unused, byte-fallback or blank."""
        if self._readable is None:
            special = special_ids(self.tokenizer)
            keep = [readable(i, text, special) for i, text in enumerate(self._texts())]
            self._readable = torch.tensor(keep, dtype=torch.bool, device=self.device)
        return self._readable

    # --- source representations -----------------------------------------------------------
    def _embed(self, ids: Tensor | slice) -> Tensor:
        rows = self._embed_weight[ids].to(self.device, torch.float32)
        return rows * self._embed_scale if self._embed_scale != 1.0 else rows

    def _represent(self, embedded: Tensor, source: str | None = None) -> Tensor:
        """A weights-only source representation for layers > 0, from embeddings."""
        source = source or self.settings.source
        if source == "embed":
            return embedded
        mlp = self.adapter.mlp0(embedded, pre_norm=self.settings.mlp_norm, post_norm=self.settings.fold_norms)
        return mlp if source == "mlp0" else embedded + mlp

    @torch.inference_mode()
    def source_rows(self, layer: int, ids: Tensor | slice) -> Float[Tensor, "n d"]:
        """What layer ``layer``'s value projection reads for these source tokens (pre-norm)."""
        if self.residual is not None:
            return self.residual.rows(layer, ids)
        if layer == 0 or self.settings.source == "embed":
            return self._embed(ids)
        if self._source_cache is not None:
            return self._source_cache[ids].to(self.device)
        return self._represent(self._embed(ids))

    @torch.inference_mode()
    def _full_sources(self, progress: Progress | None) -> None:
        """Compute the later layers' source representation for the whole vocabulary, once."""
        if (
            self._source_cache is not None
            or self.settings.source in ("embed", "residual")
            or self.n_layers < 2
        ):
            return
        d = self._embed_weight.shape[1]
        out = torch.empty(self.vocab_size, d, device=self.device)
        step = 8192
        for start in range(0, self.vocab_size, step):
            stop = min(start + step, self.vocab_size)
            out[start:stop] = self._represent(self._embed(slice(start, stop)))
            if progress:
                progress("source representation", stop, self.vocab_size)
        self._source_cache = out

    def _value_input(self, layer: int, rows: Tensor) -> Tensor:
        norm = self.layers[layer].norm
        return norm(rows) if norm is not None else rows

    def _unembed_chunk(self, start: int, stop: int) -> Float[Tensor, "d c"]:
        u = self._U[start:stop].to(self.device, torch.float32).T * self._U_scale[:, None]
        return u - u.mean(0, keepdim=True) if self._U_center else u

    def _unembed_columns(self, ids: Tensor) -> Float[Tensor, "d n"]:
        u = self._U[ids].to(self.device, torch.float32).T * self._U_scale[:, None]
        return u - u.mean(0, keepdim=True) if self._U_center else u

    # --- salient operations ----------------------------------------------------------------
    @torch.inference_mode()
    def amplification(
        self, layer: int, ids: Tensor | slice, rows: Tensor | None = None
    ) -> Float[Tensor, "n n_heads"]:
        """``‖x W_V W_O‖ / ‖x‖`` for each head of ``layer``, where x is what W_V reads for
        ``ids`` (or for the given source ``rows``)."""
        lay = self.layers[layer]
        x = self._value_input(layer, self.source_rows(layer, ids) if rows is None else rows)
        s = (x @ lay.W_V).view(x.shape[0], self.n_kv, self.hd)
        t = torch.einsum("nkh,khg->nkg", s, lay.amp_factor)
        norms = t.reshape(x.shape[0], self.n_heads, self.hd).norm(dim=-1)
        return norms / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @torch.inference_mode()
    def salient_sources(self, progress: Progress | None = None) -> tuple[Tensor, Tensor]:
        """Top-N source token ids and amplifications per head: ``[layers, heads, N]`` each."""
        if self.residual is not None:
            return residual_salient(self, self.residual, progress)
        self._full_sources(progress)
        n_top = self.settings.top_tokens
        ids_out = torch.empty(self.n_layers, self.n_heads, n_top, dtype=torch.long)
        amp_out = torch.empty(self.n_layers, self.n_heads, n_top)
        mask = self.readable_mask() if self.settings.readable_only else None
        step = max(1024, self.chunk_elements // max(self.adapter.d_model, 1) // 4)
        for layer in range(self.n_layers):
            best_v = torch.full((self.n_heads, 0), float("-inf"), device=self.device)
            best_i = torch.zeros((self.n_heads, 0), dtype=torch.long, device=self.device)
            for start in range(0, self.vocab_size, step):
                stop = min(start + step, self.vocab_size)
                amp = self.amplification(layer, slice(start, stop)).T  # [heads, c]
                if mask is not None:
                    amp = amp.masked_fill(~mask[start:stop], float("-inf"))
                best_v, best_i = _merge_topk(best_v, best_i, amp, start, n_top)
            ids_out[layer], amp_out[layer] = best_i.cpu(), best_v.cpu()
            if progress:
                progress("salient tokens", layer + 1, self.n_layers)
        return ids_out, amp_out

    # --- head mappings ---------------------------------------------------------------------
    @torch.inference_mode()
    def head_outputs(self, layer: int, source_ids: Tensor) -> Float[Tensor, "n_heads n d"]:
        """Each head's (folded) output for each source token: ``x W_V W_O``."""
        lay = self.layers[layer]
        x = self._value_input(layer, self.source_rows(layer, source_ids))
        s = (x @ lay.W_V).view(x.shape[0], self.n_kv, self.hd)
        kv = torch.arange(self.n_heads, device=self.device) // (self.n_heads // self.n_kv)
        return torch.einsum("nhe,hed->hnd", s[:, kv], lay.W_O)

    @torch.inference_mode()
    def analyze(
        self,
        operations: Sequence[TokenizedOperation] = (),
        with_salient: bool = True,
        progress: Progress | None = None,
    ) -> tuple[list[HeadSalient], list[OperationScores]]:
        """Salient operations of every head and the scores of ``operations``, in one pass."""
        salient_ids = salient_amp = None
        if with_salient:
            salient_ids, salient_amp = self.salient_sources(progress)
        pair_src, pair_tgt, pair_k, pair_op = flatten_pairs(operations)
        unique_src, pair_row = torch.unique(pair_src, return_inverse=True)
        n_pairs = len(pair_src)
        greater = torch.zeros(self.n_layers, self.n_heads, n_pairs, dtype=torch.long)
        less = torch.zeros_like(greater)
        mapped_ids = mapped_logits = None
        if with_salient:
            k_map = self.settings.top_mappings
            mapped_ids = torch.empty(
                self.n_layers, self.n_heads, self.settings.top_tokens, k_map, dtype=torch.long
            )
            mapped_logits = torch.empty(self.n_layers, self.n_heads, self.settings.top_tokens, k_map)
        for layer in range(self.n_layers):
            g, lss, top = self._scan_layer(
                layer,
                unique_src.to(self.device),
                pair_row.to(self.device),
                pair_tgt.to(self.device),
                pair_k.to(self.device),
                None if salient_ids is None else salient_ids[layer].to(self.device),
            )
            greater[layer], less[layer] = g.cpu(), lss.cpu()
            if top is not None:
                mapped_logits[layer], mapped_ids[layer] = (t.cpu() for t in top)
            if progress:
                progress("head mappings", layer + 1, self.n_layers)
        scores = pair_scores(operations, pair_op, pair_k, greater, less)
        heads = []
        if with_salient:
            heads = self._salient_results(salient_ids, salient_amp, mapped_ids, mapped_logits)
        return heads, scores

    def _scan_layer(
        self,
        layer: int,
        unique_src: Int[Tensor, " u"],
        pair_row: Int[Tensor, " p"],
        pair_tgt: Int[Tensor, " p"],
        pair_k: Int[Tensor, " p"],
        salient: Int[Tensor, "n_heads n_top"] | None,
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
        """Stream the vocabulary once for one layer: pair ranks and salient top mappings."""
        H, P = self.n_heads, len(pair_row)
        Y = self.head_outputs(layer, unique_src) if len(unique_src) else None  # [H, u, d]
        greater = torch.zeros(H, P, dtype=torch.long, device=self.device)
        less = torch.zeros_like(greater)
        active = torch.ones(H, P, dtype=torch.bool, device=self.device)
        target_logit = None
        if Y is not None:
            u_t = self._unembed_columns(pair_tgt)  # [d, P]
            target_logit = torch.einsum("hpd,dp->hp", Y[:, pair_row], u_t)
            Y_flat = Y.reshape(H * len(unique_src), -1)
        top = None
        if salient is not None:
            n_top = salient.shape[1]
            Ys = torch.stack([self.head_outputs(layer, salient[h])[h] for h in range(H)])  # [H, N, d]
            Ys_flat = Ys.reshape(H * n_top, -1)
            k_map = self.settings.top_mappings
            best_v = torch.full((H * n_top, 0), float("-inf"), device=self.device)
            best_i = torch.zeros((H * n_top, 0), dtype=torch.long, device=self.device)
            mask = self.readable_mask() if self.settings.readable_only else None
        start = 0
        while start < self.vocab_size:
            n_rows = int(active.sum()) + (0 if salient is None else H * n_top)
            if n_rows == 0:
                break
            step = int(min(max(self.chunk_elements // max(n_rows, 1), 1024), 1 << 17))
            stop = min(start + step, self.vocab_size)
            U_c = self._unembed_chunk(start, stop)
            if Y is not None and active.any():
                h_idx, p_idx = active.nonzero(as_tuple=True)
                rows = h_idx * len(unique_src) + pair_row[p_idx]
                uniq_rows, inverse = torch.unique(rows, return_inverse=True)
                logits = (Y_flat[uniq_rows] @ U_c)[inverse]  # [n_active, c]
                t = target_logit[h_idx, p_idx][:, None]
                n_greater, n_less = (logits > t).sum(1), (logits < t).sum(1)
                # The target's own column differs from ``t`` by rounding (another summation
                # order); it must not count as beating itself.
                tgt = pair_tgt[p_idx]
                here = ((tgt >= start) & (tgt < stop)).nonzero(as_tuple=True)[0]
                own = logits[here, tgt[here] - start]
                n_greater[here] -= (own > t[here, 0]).long()
                n_less[here] -= (own < t[here, 0]).long()
                greater[h_idx, p_idx] += n_greater
                less[h_idx, p_idx] += n_less
                k = pair_k[p_idx]
                # Once k tokens beat the target on both sides its top-k membership is settled.
                done = (greater[h_idx, p_idx] >= k) & (less[h_idx, p_idx] >= k)
                active[h_idx[done], p_idx[done]] = False
            if salient is not None:
                logits = Ys_flat @ U_c
                if mask is not None:
                    logits = logits.masked_fill(~mask[start:stop], float("-inf"))
                best_v, best_i = _merge_topk(best_v, best_i, logits, start, k_map)
            start = stop
        if salient is not None:
            top = (best_v.view(H, n_top, -1), best_i.view(H, n_top, -1))
        return greater, less, top

    def _salient_results(
        self, ids: Tensor, amp: Tensor, mapped_ids: Tensor, mapped_logits: Tensor
    ) -> list[HeadSalient]:
        heads = []
        for layer in range(self.n_layers):
            for head in range(self.n_heads):
                tokens = []
                for j in range(ids.shape[2]):
                    if not torch.isfinite(amp[layer, head, j]):
                        continue
                    maps = [
                        MappedToken(token=self.token_text(int(t)), token_id=int(t), logit=float(v))
                        for t, v in zip(
                            mapped_ids[layer, head, j], mapped_logits[layer, head, j], strict=True
                        )
                        if torch.isfinite(v)
                    ]
                    tid = int(ids[layer, head, j])
                    tokens.append(
                        SalientToken(
                            token=self.token_text(tid),
                            token_id=tid,
                            amplification=float(amp[layer, head, j]),
                            mappings=maps,
                        )
                    )
                heads.append(HeadSalient(layer=layer, head=head, salient=tokens))
        return heads


def _merge_topk(best_v: Tensor, best_i: Tensor, values: Tensor, offset: int, k: int) -> tuple[Tensor, Tensor]:
    """Running top-k over vocabulary chunks; ``values`` is ``[rows, c]`` for ids ``offset…``."""
    kk = min(k, values.shape[1])
    v, i = values.topk(kk, dim=1)
    all_v = torch.cat([best_v, v], dim=1)
    all_i = torch.cat([best_i, i + offset], dim=1)
    v, j = all_v.topk(min(k, all_v.shape[1]), dim=1)
    return v, all_i.gather(1, j)
