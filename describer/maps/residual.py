"""The context-free residual source: what layer L really reads for token s when the model sees
nothing but ``[prefix, s]``.

One forward pass per token (batched, the LM head skipped), no dataset and no context: the
residual stream entering each layer at the position of ``s``. It matches what heads do far
better than any weights-only representation (docs/analyzer.md), at the price of a forward
pass per source token, so it is computed only for the tokens asked for and kept for the run.

The prefix is never empty: at position 0 a token is the attention sink, with an outsized
residual that no later position has (qwen2.5's correlation collapses to ~0 there). It is the
tokenizer's BOS token where the family has one (Gemma, Llama, GPT-2, NeoX: what the model is
trained to see first), else ``<|endoftext|>`` (Qwen, which has no BOS: the token that separates
documents in its training data), else the EOS token.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from describer.errors import HeadmapsError
from describer.maps.adapters.base import Adapter
from describer.maps.rowcache import RowStore

if TYPE_CHECKING:
    from describer.maps.analyzer import Analyzer

Progress = Callable[[str, int, int], None]
ENDOFTEXT = "<|endoftext|>"


def prefix_token(tokenizer: object, vocab_size: int | None = None) -> tuple[int, str]:
    """The id and text of the token put before every source token, and why (see the module):
    the first of BOS, ``<|endoftext|>`` and EOS that the tokenizer has and, when ``vocab_size``
    is given, the model's embedding holds (a tokenizer may be larger than the embedding)."""
    bos, eos = getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)
    bos_text = str(getattr(tokenizer, "bos_token", ""))
    if bos is not None and (vocab_size is None or int(bos) < vocab_size):
        return int(bos), bos_text  # the common case, without building the vocabulary's dict
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}  # type: ignore[attr-defined]
    candidates = [
        (bos, bos_text),
        (vocab.get(ENDOFTEXT), ENDOFTEXT),
        (eos, str(getattr(tokenizer, "eos_token", ""))),
    ]
    present = [(int(i), text) for i, text in candidates if i is not None]
    for token_id, text in present:
        if vocab_size is None or token_id < vocab_size:
            return token_id, text
    if present:
        found = ", ".join(f"{text} (id {i})" for i, text in present)
        raise HeadmapsError(
            f"the tokenizer's prefix tokens {found} are outside the model's embedding of {vocab_size} rows: "
            "the tokenizer does not belong to this model"
        )
    raise HeadmapsError("--source residual needs a BOS, <|endoftext|> or EOS token to put before each source")


class _Enough(Exception):
    """Raised inside a forward pass once the residuals asked for are read."""


class ResidualSource:
    """Residual rows per (token id, layer), computed on demand and kept for the run: in memory
    while they are few, else in a temporary file (``RowStore``), so that a big model's many
    candidates cost disk, not resident memory. A token asked for at one layer is stored at every
    layer (its forward pass yields them all); the salient-candidate search stores only the layers
    where a token is a candidate (``ensure_at``)."""

    def __init__(
        self, adapter: Adapter, tokenizer: object, device: torch.device, batch_size: int = 256
    ) -> None:
        self.adapter = adapter
        self.device = device
        self.batch_size = batch_size
        self.prefix_id, self.prefix_text = prefix_token(tokenizer, adapter.vocab_size)
        self._slots: dict[tuple[int, int], int] = {}
        self._store = RowStore(adapter.d_model, device)
        self.forward_passes = 0
        """Tokens run through the model so far (each once)."""
        self._prefix: object | None = None  # the prefix's key/value cache (False: none)
        self._cache_arg = "past_key_values"

    @property
    def kept(self) -> int:
        """(token, layer) rows kept."""
        return len(self._slots)

    @property
    def on_disk(self) -> bool:
        return self._store.on_disk

    def close(self) -> None:
        """Drop the kept rows (and their file); later requests compute them again."""
        self._store.close()
        self._store = RowStore(self.adapter.d_model, self.device)
        self._slots.clear()

    @torch.inference_mode()
    def ensure(self, ids: Tensor | list[int], progress: Progress | None = None) -> None:
        """Run the tokens not stored yet at every layer, ``batch_size`` at a time."""
        wanted = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        every = range(self.adapter.n_layers)
        self.ensure_at({int(i): every for i in wanted}, progress)

    @torch.inference_mode()
    def ensure_at(self, needs: dict[int, Iterable[int]], progress: Progress | None = None) -> None:
        """Store each token's residual at the layers ``needs`` names for it: the tokens missing
        one run through the model once, ``batch_size`` at a time, and only those rows are kept."""
        missing = {
            token: layers
            for token, wanted in needs.items()
            if (layers := sorted({int(x) for x in wanted if (token, int(x)) not in self._slots}))
        }
        if not missing:
            return
        # Shallow needs first: a batch runs only as deep as its deepest token needs.
        order = sorted(missing, key=lambda token: (missing[token][-1], token))
        with self.adapter.running():  # a streamed model's blocks: loaded once for every batch
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                entering = self._entering(torch.tensor(chunk), max(missing[t][-1] for t in chunk))
                # Stored layer by layer as taken: never the batch's rows at every layer at once.
                for layer, hidden in enumerate(entering):
                    at = [i for i, token in enumerate(chunk) if layer in missing[token]]
                    if not at:
                        continue
                    rows = hidden[torch.tensor(at, device=hidden.device), -1, :].float()
                    for i, slot in zip(at, self._store.append(rows), strict=True):
                        self._slots[(chunk[i], layer)] = slot
                    entering[layer] = None  # its hidden states go as soon as they are stored
                if progress:
                    progress("residual sources", min(start + self.batch_size, len(order)), len(order))

    @torch.inference_mode()
    def forward(self, ids: Tensor, upto: int | None = None) -> Float[Tensor, "n layers d"]:
        """The residual entering layers ``0..upto`` (default: every layer) at each token of
        ``ids`` after the prefix (not kept). The prefix's keys and values are computed once for
        the run, so a pass computes only the tokens' own position, and it stops before block
        ``upto`` runs: what the blocks after it would compute is never needed."""
        n = len(ids)
        entering = self._entering(ids, upto)
        return torch.stack([hidden[:n, -1, :].float() for hidden in entering], dim=1)

    def _entering(self, ids: Tensor, upto: int | None = None) -> list[Tensor | None]:
        """``forward``'s hidden states as the blocks receive them, ``[n', positions, d]`` each in
        the compute dtype (``n' >= n``: see below), in a list its caller may empty as it goes."""
        depth = self.adapter.n_layers if upto is None else upto + 1
        n = len(ids)
        if n == 1:  # a batch of one would run matrix-vector kernels, whose rounding depends on
            ids = ids.repeat(2)  # where the weights lie in memory: streamed != loaded whole
        cache = self._prefix_cache(len(ids))
        if cache is None:  # a model without a key/value cache: the prefix with every token
            batch = torch.stack([torch.full_like(ids, self.prefix_id), ids], dim=1).to(self.device)
        else:
            batch = ids[:, None].to(self.device)
        passed = {} if cache is None else {self._cache_arg: cache}
        entering: list[Tensor | None] = list(self._run(batch, depth, **passed, use_cache=cache is not None))
        self.forward_passes += n
        return entering

    def _run(self, batch: Tensor, depth: int, **kwargs: object) -> list[Tensor]:
        """The hidden states entering blocks ``0..depth-1`` for ``batch``; the blocks after
        are not run (a hook stops the pass, prepended so that it comes before a streamed
        model's hook loads the block)."""
        entering: list[Tensor] = []

        def grab(module: object, args: tuple, kw: dict) -> None:
            entering.append(args[0] if args else kw["hidden_states"])
            if len(entering) == depth:
                raise _Enough

        blocks = [self.adapter.block_module(i) for i in range(depth)]
        handles = [b.register_forward_pre_hook(grab, prepend=True, with_kwargs=True) for b in blocks]
        try:
            with self.adapter.running():
                self.adapter.model.base_model(**self.adapter.forward_inputs(batch), **kwargs)
        except _Enough:
            pass
        finally:
            for handle in handles:
                handle.remove()
        if len(entering) != depth:
            raise HeadmapsError(f"residual source: {len(entering)} of {depth} blocks ran")
        return entering

    def _prefix_cache(self, n: int) -> object | None:
        """The prefix's key/value cache, repeated for a batch of ``n`` (a fresh copy: a pass
        appends to it); None where the model returns none."""
        if self._prefix is None:  # run twice over, for the reason in ``forward``
            prefix = torch.full((2, 1), self.prefix_id, device=self.device)
            with self.adapter.running():
                out = self.adapter.model.base_model(**self.adapter.forward_inputs(prefix), use_cache=True)
            past = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            self._prefix = past if hasattr(past, "batch_select_indices") else False
            forward = inspect.signature(self.adapter.model.base_model.forward).parameters
            self._cache_arg = "cache" if "cache" in forward else "past_key_values"  # renamed in 5.x
        if self._prefix is False:
            return None
        cache = copy.deepcopy(self._prefix)
        cache.batch_select_indices(torch.zeros(n, dtype=torch.long, device=self.device))
        return cache

    def rows(self, layer: int, ids: Tensor | slice) -> Float[Tensor, "n d"]:
        """The residual entering ``layer`` at each token of ``ids``."""
        if isinstance(ids, slice):
            ids = torch.arange(ids.start or 0, ids.stop)
        wanted = ids.tolist()
        self.ensure([i for i in wanted if (i, layer) not in self._slots])
        return self._store.read(torch.tensor([self._slots[(i, layer)] for i in wanted], dtype=torch.long))


PROXY_SAMPLE = 4096
"""Tokens whose exact residual fits the linear proxy (a seeded sample of the readable ones)."""


def _proxy(
    analyzer: Analyzer, residual: ResidualSource, mask: Tensor | None, progress: Progress | None
) -> tuple[Callable[[int, int, int], Tensor], bool]:
    """``approximate(layer, start, stop)``: cheap stand-in rows for tokens ``start..stop``, and
    whether they are the same for every layer above 0.

    ``linear``: per layer, the least-squares map from a token's embedding (and a constant) to its
    exact residual, fitted on ``PROXY_SAMPLE`` tokens run through the model; ``embed+mlp0``: the
    weights-only sum of the embedding and block 0's MLP of it (layer 0: the embedding)."""
    if analyzer.settings.salient_proxy == "embed+mlp0":

        def weights_only(layer: int, start: int, stop: int) -> Tensor:
            embedded = analyzer._embed(slice(start, stop))
            return embedded if layer == 0 else analyzer._represent(embedded, "embed+mlp0")

        return weights_only, True
    maps = linear_maps(analyzer, residual, mask, progress)

    def linear(layer: int, start: int, stop: int) -> Tensor:
        return analyzer._embed(slice(start, stop)) @ maps[layer][:-1] + maps[layer][-1]

    return linear, False


def proxy_sample(analyzer: Analyzer, mask: Tensor | None) -> Tensor:
    """The ``PROXY_SAMPLE`` tokens the linear proxy is fitted on: a seeded sample of ``mask``'s."""
    pool = torch.arange(analyzer.vocab_size) if mask is None else mask.nonzero().squeeze(1).cpu()
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))
    return pool[order[:PROXY_SAMPLE]].to(analyzer.device)


def linear_maps(
    analyzer: Analyzer, residual: ResidualSource, mask: Tensor | None, progress: Progress | None = None
) -> list[Float[Tensor, "d_plus_1 d"]]:
    """Per layer, the least-squares map ``[embedding, 1] -> residual`` (the ``linear`` proxy),
    fitted on ``PROXY_SAMPLE`` tokens (a seeded sample of ``mask``'s) run through the model."""
    sample = proxy_sample(analyzer, mask)
    residual.ensure(sample, progress)
    X = torch.cat([analyzer._embed(sample), torch.ones(len(sample), 1, device=analyzer.device)], 1).double()
    return [
        torch.linalg.lstsq(X, residual.rows(layer, sample).double()).solution.float()
        for layer in range(analyzer.n_layers)
    ]


@torch.inference_mode()
def residual_salient(
    analyzer: Analyzer, residual: ResidualSource, progress: Progress | None = None
) -> tuple[Tensor, Tensor]:
    """Top-N salient sources per head by residual amplification, ``[layers, heads, N]`` ids and
    amplifications, without running the whole vocabulary through the model: each head's
    ``salient_candidates`` best tokens by the amplification of a cheap proxy (``_proxy``) are the
    candidates, and the union of a layer's candidates is ranked exactly."""
    s = analyzer.settings
    if s.salient_candidates == 0:
        return residual_sweep(analyzer, residual, progress)
    L, H, N, M = analyzer.n_layers, analyzer.n_heads, s.top_tokens, max(s.salient_candidates, s.top_tokens)
    V = analyzer.vocab_size
    mask = analyzer.readable_mask() if s.readable_only else None
    step = 4096
    approximate, same_above_0 = _proxy(analyzer, residual, mask, progress)
    # Every layer's value and amplification matrices, held for the sweep (not W_O, the large
    # part): the vocabulary is swept once, each chunk's proxy rows computed once and scored by
    # every layer (the embed+mlp0 rows are the same for all layers above 0; computing them per
    # layer ran block 0's MLP over the vocabulary L times).
    layers = [replace(analyzer.layer(layer), W_O=torch.empty(0)) for layer in range(L)]
    best = [torch.full((H, 0), float("-inf"), device=analyzer.device) for _ in range(L)]
    best_i = [torch.zeros((H, 0), dtype=torch.long, device=analyzer.device) for _ in range(L)]
    chunks = range(0, V, step)
    for n_done, start in enumerate(chunks, 1):
        stop = min(start + step, V)
        shared: Tensor | None = None
        for layer in range(L):
            if same_above_0 and layer > 0:
                shared = approximate(layer, start, stop) if shared is None else shared
                rows = shared
            else:
                rows = approximate(layer, start, stop)
            amp = analyzer.amplify(layers[layer], rows).T  # [H, c]
            if mask is not None:
                amp = amp.masked_fill(~mask[start:stop], float("-inf"))
            v, i = amp.topk(min(M, stop - start), dim=1)
            merged_v = torch.cat([best[layer], v], 1)
            merged_i = torch.cat([best_i[layer], i + start], 1)
            keep = merged_v.topk(min(M, merged_v.shape[1]), dim=1)
            best[layer], best_i[layer] = keep.values, merged_i.gather(1, keep.indices)
        if progress:
            progress("salient candidates", n_done, len(chunks))
    del layers
    candidates = [torch.unique(best_i[layer][torch.isfinite(best[layer])]) for layer in range(L)]
    residual.ensure_at(_layers_of(candidates), progress)  # each at the layers it is a candidate of
    ids_out = torch.empty(L, H, N, dtype=torch.long)
    amp_out = torch.full((L, H, N), float("-inf"))
    for layer, cand in enumerate(candidates):
        amp = analyzer.amplification(layer, cand).T  # [H, n_candidates], exact
        n = min(N, amp.shape[1])
        v, j = amp.topk(n, dim=1)
        ids_out[layer, :, :n], amp_out[layer, :, :n] = cand[j].cpu(), v.cpu()
        ids_out[layer, :, n:] = 0
    return ids_out, amp_out


@torch.inference_mode()
def residual_sweep(
    analyzer: Analyzer, residual: ResidualSource, progress: Progress | None = None
) -> tuple[Tensor, Tensor]:
    """The exact top-N by residual amplification over the whole vocabulary: tokens pass through
    the model in chunks, each layer's amplification is taken as a chunk passes and only the
    running top-N is kept (never the vocabulary's rows × layers); the winners' rows are then
    computed again for their mappings."""
    s = analyzer.settings
    L, H, N, V = analyzer.n_layers, analyzer.n_heads, s.top_tokens, analyzer.vocab_size
    mask = analyzer.readable_mask() if s.readable_only else None
    best = torch.full((L, H, 0), float("-inf"), device=analyzer.device)
    best_i = torch.zeros((L, H, 0), dtype=torch.long, device=analyzer.device)
    step = residual.batch_size
    with residual.adapter.running():  # a streamed model's blocks: loaded once for the sweep
        for start in range(0, V, step):
            stop = min(start + step, V)
            rows = residual.forward(torch.arange(start, stop))  # [c, L, d]
            amp = torch.stack(
                [
                    analyzer.amplification(layer, slice(start, stop), rows=rows[:, layer]).T
                    for layer in range(L)
                ]
            )
            if mask is not None:
                amp = amp.masked_fill(~mask[start:stop], float("-inf"))
            merged_v, merged_i = (
                torch.cat([best, amp], 2),
                torch.cat([best_i, torch.arange(start, stop, device=analyzer.device).expand(L, H, -1)], 2),
            )
            keep = merged_v.topk(min(N, merged_v.shape[2]), dim=2)
            best, best_i = keep.values, merged_i.gather(2, keep.indices)
            if progress:
                progress("residual sweep", stop, V)
    residual.ensure_at(_layers_of([best_i[layer][torch.isfinite(best[layer])] for layer in range(L)]))
    return best_i.cpu(), best.cpu()


def _layers_of(per_layer: list[Tensor]) -> dict[int, set[int]]:
    """Token id -> the layers whose list names it."""
    needs: dict[int, set[int]] = {}
    for layer, ids in enumerate(per_layer):
        for token in ids.flatten().tolist():
            needs.setdefault(int(token), set()).add(layer)
    return needs
