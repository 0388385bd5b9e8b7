"""MAPS: what each attention head's OV circuit does, read from the weights.

A head maps a source token ``s`` to vocabulary logits ``rep(s) @ W_V @ W_O @ U`` (Elhelo &
Geva, 2024). Two questions are answered here:

- *operation scores*: for an operation's (source, target) pairs, the fraction of pairs whose
  target is among the top-k tokens of the head's mapping of the source (relation score),
  and the same for the negated mapping (suppression score);
- *salient operations*: the source tokens the head amplifies most (``‖x W_VO‖ / ‖x‖``) and
  the tokens each one is mapped to (and those it is most negatively mapped to, its
  suppressed tokens).

Nothing here materialises a ``d×d`` W_VO or a full vocabulary row per head: value
projections are shared by the heads of a key/value group, amplification uses an
``hd×hd`` factor of each head's W_O, vocabulary logits are streamed in chunks, and a pair
stops being scored as soon as enough tokens have beaten its target on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from describer.maps.adapters.base import Adapter
from describer.maps.memory import between_layers
from describer.maps.operations import TokenizedOperation
from describer.maps.pairs import flatten_pairs, pair_scores
from describer.maps.readable import readable, special_ids
from describer.maps.residual import ResidualSource, residual_salient
from describer.maps.results import HeadSalient, MappedToken, OperationScores, SalientToken
from describer.maps.rowcache import MEMORY_BYTES, RowCache
from describer.maps.scan import PAIR_BYTES, Mappings, merge_topk, scan_layer
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
        chunk_elements: int = 1 << 22,
        pair_bytes: int = PAIR_BYTES,
        cache_bytes: int = MEMORY_BYTES,
    ) -> None:
        self.adapter = adapter
        self.tokenizer = tokenizer
        self.settings = settings
        self.device = torch.device(device)
        self.chunk_elements = chunk_elements
        """Budget, in floats, for one block of streamed logits."""
        self.pair_bytes = pair_bytes
        """Budget for one batch of operation pairs' head outputs."""
        self.cache_bytes = cache_bytes
        """The whole vocabulary's source representation is kept in memory up to this size, else in
        a temporary file."""
        a = adapter
        self.n_layers, self.n_heads, self.n_kv, self.hd = a.n_layers, a.n_heads, a.n_kv_heads, a.head_dim
        self.vocab_size = a.vocab_size
        self.d_model = a.d_model
        final = a.final_norm()
        self._U_scale = (final.weight if settings.fold_norms else torch.ones_like(final.weight)).to(
            self.device
        )
        self._U_center = settings.fold_norms and final.kind == "layer"
        self.compute = getattr(torch, settings.dtype)
        """The dtype of the vocabulary-sized matmuls (float32 unless ``--dtype`` says otherwise)."""
        self._layers: dict[int, _Layer] = {}
        self._source_cache: RowCache | None = None
        self.residual = ResidualSource(a, tokenizer, self.device) if settings.source == "residual" else None
        self._readable: Tensor | None = None
        self._token_text: list[str] | None = None

    def close(self) -> None:
        """Release the vocabulary's cached source rows (a spill file on disk for big models)."""
        if self._source_cache is not None:
            self._source_cache.close()
            self._source_cache = None
        if self.residual is not None:
            self.residual.close()

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def layer(self, index: int) -> _Layer:
        """Layer ``index``'s value/output matrices on ``device``: read once and kept for a loaded
        model; for a streamed one only the latest layer is kept (so memory is one layer's)."""
        if index not in self._layers:
            if self.adapter.streamed:
                self._layers.clear()
                between_layers()  # a big model's previous layer and chunk buffers go back
            with self.adapter.layer_weights(index):
                self._layers[index] = self._prepare_layer(index)
        return self._layers[index]

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

    def mm(self, a: Tensor, b: Tensor) -> Tensor:
        """``a @ b`` in the compute dtype, returned as float32."""
        if self.compute is torch.float32:
            return a @ b
        return (a.to(self.compute) @ b.to(self.compute)).float()

    def einsum(self, spec: str, a: Tensor, b: Tensor) -> Tensor:
        if self.compute is torch.float32:
            return torch.einsum(spec, a, b)
        return torch.einsum(spec, a.to(self.compute), b.to(self.compute)).float()

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
        return self.adapter.embedding_rows(ids, self.device)

    def _represent(self, embedded: Tensor, source: str | None = None) -> Tensor:
        """A weights-only source representation for layers > 0, from embeddings."""
        source = source or self.settings.source
        if source == "embed":
            return embedded
        with self.adapter.block0_weights():
            mlp = self.adapter.mlp0(
                embedded, pre_norm=self.settings.mlp_norm, post_norm=self.settings.fold_norms
            )
        return mlp if source == "mlp0" else embedded + mlp

    @torch.inference_mode()
    def source_rows(self, layer: int, ids: Tensor | slice) -> Float[Tensor, "n d"]:
        """What layer ``layer``'s value projection reads for these source tokens (pre-norm)."""
        if self.residual is not None:
            return self.residual.rows(layer, ids)
        if layer == 0 or self.settings.source == "embed":
            return self._embed(ids)
        if self._source_cache is not None:
            return self._source_cache.read(ids)
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
        out = RowCache(self.vocab_size, self.d_model, self.device, memory_bytes=self.cache_bytes)
        step = max(256, min(8192, self.chunk_elements // 8 // max(self.d_model, 1)))
        with self.adapter.block0_weights():
            for start in range(0, self.vocab_size, step):
                stop = min(start + step, self.vocab_size)
                out.write(start, self._represent(self._embed(slice(start, stop))))
                if progress:
                    progress("source representation", stop, self.vocab_size)
        self._source_cache = out

    def _value_input(self, layer: int, rows: Tensor) -> Tensor:
        norm = self.layer(layer).norm
        return norm(rows) if norm is not None else rows

    def _unembed_columns(self, ids: Tensor | slice) -> Float[Tensor, "d n"]:
        u = self.adapter.unembedding_rows(ids, self.device).T * self._U_scale[:, None]
        return u - u.mean(0, keepdim=True) if self._U_center else u

    # --- salient operations ----------------------------------------------------------------
    @torch.inference_mode()
    def amplification(
        self, layer: int, ids: Tensor | slice, rows: Tensor | None = None
    ) -> Float[Tensor, "n n_heads"]:
        """``‖x W_V W_O‖ / ‖x‖`` for each head of ``layer``, where x is what W_V reads for
        ``ids`` (or for the given source ``rows``)."""
        lay = self.layer(layer)
        return self.amplify(lay, self.source_rows(layer, ids) if rows is None else rows)

    def amplify(self, lay: _Layer, rows: Tensor) -> Float[Tensor, "n n_heads"]:
        """``amplification`` with the layer's matrices given (held across a sweep)."""
        x = lay.norm(rows) if lay.norm is not None else rows
        s = (x @ lay.W_V).view(x.shape[0], self.n_kv, self.hd)
        t = torch.einsum("nkh,khg->nkg", s, lay.amp_factor)
        norms = t.reshape(x.shape[0], self.n_heads, self.hd).norm(dim=-1)
        return norms / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @torch.inference_mode()
    def salient_sources(self, progress: Progress | None = None) -> tuple[Tensor, Tensor]:
        """Top-N source token ids and amplifications per head: ``[layers, heads, N]`` each."""
        if self.residual is not None:
            with self.adapter.block0_weights():  # the candidates' proxy reads block 0's MLP
                return residual_salient(self, self.residual, progress)
        self._full_sources(progress)
        n_top = self.settings.top_tokens
        ids_out = torch.empty(self.n_layers, self.n_heads, n_top, dtype=torch.long)
        amp_out = torch.empty(self.n_layers, self.n_heads, n_top)
        for layer in range(self.n_layers):
            ids_out[layer], amp_out[layer] = self._salient_layer(layer)
            if progress:
                progress("salient tokens", layer + 1, self.n_layers)
        return ids_out, amp_out

    def _salient_layer(self, layer: int) -> tuple[Tensor, Tensor]:
        """Layer ``layer``'s top-N sources per head by amplification (weights-only sources)."""
        n_top = self.settings.top_tokens
        mask = self.readable_mask() if self.settings.readable_only else None
        step = max(1024, self.chunk_elements // max(self.d_model, 1) // 4)
        best_v = torch.full((self.n_heads, 0), float("-inf"), device=self.device)
        best_i = torch.zeros((self.n_heads, 0), dtype=torch.long, device=self.device)
        for start in range(0, self.vocab_size, step):
            stop = min(start + step, self.vocab_size)
            amp = self.amplification(layer, slice(start, stop)).T  # [heads, c]
            if mask is not None:
                amp = amp.masked_fill(~mask[start:stop], float("-inf"))
            best_v, best_i = merge_topk(best_v, best_i, amp, start, n_top)
        return best_i.cpu(), best_v.cpu()

    # --- head mappings ---------------------------------------------------------------------
    @torch.inference_mode()
    def head_outputs(self, layer: int, source_ids: Tensor) -> Float[Tensor, "n_heads n d"]:
        """Each head's (folded) output for each source token: ``x W_V W_O``."""
        lay = self.layer(layer)
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
        """Salient operations of every head and the scores of ``operations``, one layer at a time
        (each layer's weights are read once: its salient sources, then its vocabulary pass)."""
        L, H, N = self.n_layers, self.n_heads, self.settings.top_tokens
        salient_ids = salient_amp = None
        per_layer = with_salient and self.residual is None
        if with_salient and not per_layer:
            salient_ids, salient_amp = self.salient_sources(progress)
        elif per_layer:
            self._full_sources(progress)
            salient_ids = torch.empty(L, H, N, dtype=torch.long)
            salient_amp = torch.empty(L, H, N)
        pair_src, pair_tgt, pair_k, pair_op = flatten_pairs(operations)
        unique_src, pair_row = torch.unique(pair_src, return_inverse=True)
        greater = torch.zeros(L, H, len(pair_src), dtype=torch.long)
        less = torch.zeros_like(greater)
        mapped = None
        if with_salient:
            k_map = self.settings.top_mappings
            # top logits, their ids, bottom logits, their ids (``scan.Mappings``), every layer
            mapped = (
                torch.empty(L, H, N, k_map),
                torch.empty(L, H, N, k_map, dtype=torch.long),
                torch.empty(L, H, N, k_map),
                torch.empty(L, H, N, k_map, dtype=torch.long),
            )
        for layer in range(L):
            if per_layer:
                salient_ids[layer], salient_amp[layer] = self._salient_layer(layer)
            g, lss, top = scan_layer(
                self,
                layer,
                unique_src.to(self.device),
                pair_row.to(self.device),
                pair_tgt.to(self.device),
                pair_k.to(self.device),
                None if salient_ids is None else salient_ids[layer].to(self.device),
                self.pair_bytes,
            )
            greater[layer], less[layer] = g.cpu(), lss.cpu()
            if top is not None:
                for out, t in zip(mapped, top, strict=True):
                    out[layer] = t.cpu()
            if progress:
                progress("head mappings", layer + 1, L)
        scores = pair_scores(operations, pair_op, pair_k, greater, less, self.token_text)
        heads = []
        if with_salient:
            heads = self._salient_results(salient_ids, salient_amp, mapped)
        return heads, scores

    def _salient_results(self, ids: Tensor, amp: Tensor, mapped: Mappings) -> list[HeadSalient]:
        top_v, top_i, low_v, low_i = mapped

        def tokens(values: Tensor, token_ids: Tensor) -> list[MappedToken]:
            return [
                MappedToken(token=self.token_text(int(t)), token_id=int(t), logit=float(v))
                for t, v in zip(token_ids.tolist(), values.tolist(), strict=True)
                if math.isfinite(v)  # ±inf: fewer allowed tokens than asked for
            ]

        heads = []
        for layer in range(self.n_layers):
            for head in range(self.n_heads):
                salient = []
                for j in range(ids.shape[2]):
                    if not torch.isfinite(amp[layer, head, j]):
                        continue
                    tid = int(ids[layer, head, j])
                    salient.append(
                        SalientToken(
                            token=self.token_text(tid),
                            token_id=tid,
                            amplification=float(amp[layer, head, j]),
                            mappings=tokens(top_v[layer, head, j], top_i[layer, head, j]),
                            suppressed=tokens(low_v[layer, head, j], low_i[layer, head, j]),
                        )
                    )
                heads.append(HeadSalient(layer=layer, head=head, salient=salient))
        return heads
