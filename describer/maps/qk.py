"""A static view of a head's QK circuit: which key tokens the query side of a token prefers,
read from the weights (the ``E·W_Q·W_Kᵀ·Eᵀ`` analogue of MAPS's OV mapping; docs/qk.md).

For layer L, head h (key/value head g = ``kv_head(h)``), a query token a and a key token b:

    q(a) = q_norm(attn_norm(x_a) · W_Q[h] + b_Q[h])
    k(b) = k_norm(attn_norm(x_b) · W_K[g] + b_K[g])
    score(a, b) = softcap(scale · q(a) · M k(b))

exactly as the model computes its attention logit, except for two stated simplifications:

- ``x`` is a representation of the token alone, not the residual stream in a context
  (``describer.maps.qk_view`` chooses it: by default the context-free residual);
- ``M`` stands in for the positions. With rotary embeddings the logit depends on the offset
  d = m − n between the query's and the key's positions only, through a rotation ``R(−dθ_i)`` of
  each frequency pair: ``rotary="mean"`` uses the mean rotation over offsets ``1 … max_offset``
  (per pair ``mean_d R(−dθ_i)``; dims a partial rotary leaves alone stay as they are),
  ``rotary="none"`` the identity (offset 0: a token attending to itself, where the two rotations
  cancel). Any list of offsets can be given; one offset d gives the exact logit for a key d
  positions before the query. GPT-2's learned positions are added to the residual, not to q or k:
  its view keeps the token terms only (no position beyond what the representation itself holds).

Gemma 2's soft-cap (monotonic) is applied as the model applies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from describer.errors import HeadmapsError, NotFound
from describer.maps.adapters.base import Adapter, Norm

RotaryMode = Literal["mean", "none"]
MAX_OFFSET = 64
"""Default offsets averaged over by ``rotary="mean"``: 1 … 64 positions back."""


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


@dataclass
class HeadQK:
    """One head's QK circuit, ready to score token representations (rows of the residual)."""

    attn_norm: Norm
    W_Q: Float[Tensor, "d hd"]
    b_Q: Float[Tensor, " hd"] | None
    q_norm: Norm | None
    W_K: Float[Tensor, "d hd"]
    b_K: Float[Tensor, " hd"] | None
    k_norm: Norm | None
    scale: float
    softcap: float | None
    key_cos: Float[Tensor, " r"] | None
    """The key-side operator ``M`` on the first ``r`` dims: ``k·cos + rotate_half(k)·sin``."""
    key_sin: Float[Tensor, " r"] | None
    rotary: str
    """The rotary handling in words."""

    def queries(self, rows: Float[Tensor, "n d"]) -> Float[Tensor, "n hd"]:
        q = self.attn_norm(rows) @ self.W_Q
        if self.b_Q is not None:
            q = q + self.b_Q
        return self.q_norm(q) if self.q_norm is not None else q

    def keys(self, rows: Float[Tensor, "n d"]) -> Float[Tensor, "n hd"]:
        """``scale · M k(b)``: a query's scores are its dot products with these."""
        k = self.attn_norm(rows) @ self.W_K
        if self.b_K is not None:
            k = k + self.b_K
        if self.k_norm is not None:
            k = self.k_norm(k)
        if self.key_cos is not None:
            r = self.key_cos.shape[0]
            k_rot = k[..., :r] * self.key_cos + rotate_half(k[..., :r]) * self.key_sin
            k = torch.cat([k_rot, k[..., r:]], dim=-1)
        return k * self.scale

    def scores(self, q: Float[Tensor, "a hd"], k: Float[Tensor, "b hd"]) -> Float[Tensor, "a b"]:
        s = q @ k.T
        return self.softcap * torch.tanh(s / self.softcap) if self.softcap else s


def check_head(adapter: Adapter, layer: int, head: int) -> None:
    if not 0 <= layer < adapter.n_layers:
        raise NotFound(f"layer {layer} out of range: the model has layers 0…{adapter.n_layers - 1}")
    if not 0 <= head < adapter.n_heads:
        raise NotFound(f"head {head} out of range: each layer has heads 0…{adapter.n_heads - 1}")


@torch.inference_mode()
def head_qk(
    adapter: Adapter,
    layer: int,
    head: int,
    rotary: RotaryMode = "mean",
    offsets: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
) -> HeadQK:
    """Head ``layer.head``'s QK circuit; ``offsets`` (default ``1 … MAX_OFFSET``) are the
    query−key distances the rotation is averaged over with ``rotary="mean"``."""
    check_head(adapter, layer, head)
    lw, ex = adapter.layer(layer), adapter.qk_extras(layer)
    g = adapter.kv_head(head)
    dev = torch.device(device)

    def on(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(dev)

    def norm_on(n: Norm | None) -> Norm | None:
        return None if n is None else Norm(n.kind, n.weight.to(dev), on(n.bias), n.eps)

    key_cos = key_sin = None
    if ex.rotary is None:
        note = "no rotary (learned absolute positions, added to the residual): token terms only"
    else:
        offs = list(range(1, MAX_OFFSET + 1)) if offsets is None else [int(d) for d in offsets]
        if rotary == "none":
            offs = [0]
        if not offs or min(offs) < 0:
            raise HeadmapsError("rotary offsets must be a non-empty list of distances ≥ 0")
        cos, sin = ex.rotary(torch.arange(max(offs) + 1))
        at = torch.tensor(offs)
        # cos/sin at position d carry the rotary's attention scaling s once; q·k carries it twice.
        s = cos[0]
        key_cos = (s * cos[at].mean(0)).to(dev)
        key_sin = (-s * sin[at].mean(0)).to(dev)
        r, hd = cos.shape[-1], adapter.head_dim
        dims = f"all {hd} dims" if r == hd else f"{r} of {hd} dims (the other {hd - r} unrotated)"
        if rotary == "none":
            note = f"rotary on {dims}, taken at offset 0 (no rotation: position-independent)"
        elif len(offs) == 1:
            note = f"rotary on {dims}, exact for a key {offs[0]} positions before the query"
        else:
            note = (
                f"rotary on {dims}, each frequency pair's rotation averaged over query−key "
                f"offsets {min(offs)}…{max(offs)}"
            )
    return HeadQK(
        attn_norm=norm_on(lw.attn_norm),
        W_Q=lw.W_Q[head].to(dev),
        b_Q=None if ex.b_Q is None else ex.b_Q[head].to(dev),
        q_norm=norm_on(ex.q_norm),
        W_K=lw.W_K[g].to(dev),
        b_K=None if ex.b_K is None else ex.b_K[g].to(dev),
        k_norm=norm_on(ex.k_norm),
        scale=ex.scale,
        softcap=ex.softcap,
        key_cos=key_cos,
        key_sin=key_sin,
        rotary=note,
    )
