"""Per-head capture and intervention at the last position, for every supported family.

Every adapter names two modules per layer that make this family-independent:

- ``attention_module(L)`` receives the *normed* residual stream (the fidelity tests check
  that this is exactly what the q/k/v projections read), so a head's value vector at any
  position is ``xn @ W_V[g] + b_V[g]`` with the adapter's matrices;
- ``out_proj_module(L)`` receives the heads' outputs ``z`` concatenated (``[B, T, n_heads*hd]``),
  before ``W_O``, any ``b_O`` and any post-attention norm.

A pre-hook on the output projection therefore sees each head's ``z`` at the last position and
can replace it: by the value vector of a source position (the head's attention forced to a
one-hot on that position, since ``z = Σ_t a_t v_t``) or by zeros (the head ablated; the same as
zeroing the head's rows of ``W_O`` there). A head's contribution to the residual stream is
``z_h @ W_O[h]`` (through the post-attention norm where the family has one; its scale is folded
into ``W_O_folded`` as the static analysis does).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from describer.maps.adapters.base import Adapter


class _StopForward(Exception):
    """Raised after the last layer's heads were captured, to skip the rest of the model."""


@dataclass
class HeadCapture:
    """What the hooks recorded in one forward pass (one entry per layer)."""

    z: list[Float[Tensor, "B n_heads hd"] | None] = field(default_factory=list)
    """Each head's output before ``W_O`` at the last position, as the output projection received
    it (after any forcing or ablation)."""
    v_source: list[Float[Tensor, "B n_kv hd"] | None] = field(default_factory=list)
    """Each key/value head's value vector at the row's source position (when one was given)."""

    def forced_z(self, adapter: Adapter, layer: int) -> Float[Tensor, "B n_heads hd"]:
        """``z`` of every head had its attention been one-hot on the source position."""
        v = self.v_source[layer]
        assert v is not None, "no source positions were given"
        kv = torch.arange(adapter.n_heads, device=v.device) // (adapter.n_heads // adapter.n_kv_heads)
        return v[:, kv]


@contextmanager
def head_hooks(
    adapter: Adapter,
    *,
    source: Int[Tensor, " B"] | None = None,
    force: bool = False,
    ablate: Iterable[tuple[int, int]] = (),
    ablate_all_positions: bool = False,
    stop_after_last_layer: bool = False,
) -> Iterator[HeadCapture]:
    """Hooks on every layer of ``adapter.model`` for the forward passes run inside the block.

    ``source``: per batch row, the position whose value vectors are recorded (and, with
    ``force``, that the last position's attention of every head is forced onto).
    ``ablate``: ``(layer, head)`` pairs whose output is zeroed at the last position (at every
    position with ``ablate_all_positions``). With ``stop_after_last_layer`` the forward pass is
    cut once the last layer's heads are captured (use ``run_captured``); nothing after them runs.
    Rows must be left-aligned to a common last position (equal lengths, or left padding).
    """
    if force and source is None:
        raise ValueError("forcing attention needs source positions")
    n_layers, nh, hd = adapter.n_layers, adapter.n_heads, adapter.head_dim
    by_layer: dict[int, list[int]] = {}
    for layer, head in ablate:
        if not (0 <= layer < n_layers and 0 <= head < nh):
            raise ValueError(f"no head {layer}.{head} in a model with {n_layers} layers × {nh} heads")
        by_layer.setdefault(layer, []).append(head)
    capture = HeadCapture(z=[None] * n_layers, v_source=[None] * n_layers)
    values: dict[int, tuple[Tensor, Tensor | None]] = {}
    if source is not None:
        for layer in range(n_layers):
            lw = adapter.layer(layer)
            values[layer] = (lw.W_V, lw.b_V)
    kv_of = torch.arange(nh) // (nh // adapter.n_kv_heads)

    def on_attention(layer: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            xn = args[0] if args else kwargs["hidden_states"]
            W_V, b_V = values[layer]
            rows = xn[torch.arange(xn.shape[0], device=xn.device), source.to(xn.device)]
            v = torch.einsum("bd,gde->bge", rows.float(), W_V.to(xn.device))
            capture.v_source[layer] = v + b_V.to(xn.device) if b_V is not None else v

        return hook

    def on_out_proj(layer: int):
        def hook(module: nn.Module, args: tuple) -> tuple | None:
            concat = args[0]
            changed = force or layer in by_layer
            if changed:
                concat = concat.clone()
                heads = concat.view(*concat.shape[:-1], nh, hd)
                if force:
                    v = capture.v_source[layer]
                    heads[:, -1] = v[:, kv_of.to(v.device)].to(heads.dtype)
                for head in by_layer.get(layer, ()):
                    if ablate_all_positions:
                        heads[..., head, :] = 0
                    else:
                        heads[:, -1, head] = 0
            capture.z[layer] = concat[:, -1].detach().float().view(-1, nh, hd).clone()
            if stop_after_last_layer and layer == n_layers - 1:
                raise _StopForward
            return (concat, *args[1:]) if changed else None

        return hook

    handles = []
    try:
        for layer in range(n_layers):
            if source is not None:
                handles.append(
                    adapter.attention_module(layer).register_forward_pre_hook(
                        on_attention(layer), with_kwargs=True
                    )
                )
            handles.append(adapter.out_proj_module(layer).register_forward_pre_hook(on_out_proj(layer)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()


def run_captured(model: nn.Module, ids: Tensor, **kwargs: object) -> Tensor | None:
    """``model(ids)`` that tolerates ``stop_after_last_layer``; the last position's logits, or None
    if the pass was cut short."""
    try:
        out = model(ids, use_cache=False, logits_to_keep=1, **kwargs)
    except _StopForward:
        return None
    return out.logits[:, -1]


def head_contributions(
    adapter: Adapter, capture: HeadCapture, folded: bool = True
) -> list[Float[Tensor, "B n_heads d"]]:
    """Each head's contribution to the residual stream at the last position: ``z_h @ W_O[h]``
    (``W_O_folded``: with the post-attention norm's scale, up to its per-token 1/rms)."""
    out = []
    for layer, z in enumerate(capture.z):
        lw = adapter.layer(layer)
        W_O = lw.W_O_folded() if folded else lw.W_O
        out.append(torch.einsum("bhe,hed->bhd", z, W_O.to(z.device)))
    return out
