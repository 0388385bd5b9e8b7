"""What the adapters hand the analysis: norms, one layer's per-head weights and the QK circuit's
extras, float32 row-vector convention (``x @ W`` with ``W`` shaped ``[in, out]``), and the helpers
that build them from a family's modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn


@dataclass
class Norm:
    """A normalisation exactly as the model applies it.

    ``weight`` is the effective multiplicative scale (Gemma's ``1 + w`` already added), so
    ``__call__`` reproduces the model's module. ``fold`` keeps only the linear part (mean
    centring and scale) and drops the per-vector ``1/rms`` or ``1/std`` factor, which is a
    positive scalar per token: it rescales a head's whole logit row and so changes no ranking.
    """

    kind: Literal["rms", "layer"]
    weight: Float[Tensor, " d"]
    bias: Float[Tensor, " d"] | None
    eps: float

    def __call__(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        if self.kind == "layer":
            x = x - x.mean(-1, keepdim=True)
            scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        else:
            scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        y = x * scale * self.weight
        return y + self.bias if self.bias is not None else y

    def fold(self, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        if self.kind == "layer":
            x = x - x.mean(-1, keepdim=True)
        return x * self.weight

    def fold_into_columns(self, w: Float[Tensor, "d out"]) -> Float[Tensor, "d out"]:
        """``fold(x) @ w`` as a single matrix: ``x @ fold_into_columns(w)``."""
        w = self.weight[:, None] * w
        if self.kind == "layer":
            w = w - w.mean(0, keepdim=True)
        return w


@dataclass
class LayerWeights:
    """One attention layer, split per head. ``hd`` is the head dimension."""

    attn_norm: Norm
    """The pre-attention norm applied to the residual stream before Q, K and V."""
    W_Q: Float[Tensor, "n_heads d hd"]
    W_K: Float[Tensor, "n_kv d hd"]
    W_V: Float[Tensor, "n_kv d hd"]
    """One value matrix per key/value head; query heads of a group share it."""
    b_V: Float[Tensor, "n_kv hd"] | None
    W_O: Float[Tensor, "n_heads hd d"]
    """The output projection's rows for each head, raw (no post-attention norm folded)."""
    b_O: Float[Tensor, " d"] | None
    post_attn_norm: Norm | None
    """A norm on the attention block's output before the residual add (Gemma 2/3), else None."""

    def W_O_folded(self) -> Float[Tensor, "n_heads hd d"]:
        """``W_O`` with the post-attention norm's scale folded in, as MAPS projects it."""
        if self.post_attn_norm is None:
            return self.W_O
        return self.post_attn_norm.fold(self.W_O)


Rotary = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``rotary(positions)`` -> ``(cos, sin)``, each ``[len(positions), r]``: the model's own rotary
embedding, applied as ``x_rot * cos + rotate_half(x_rot) * sin`` to a head's first ``r`` dims."""


@dataclass
class QKExtras:
    """What a layer's attention logits need besides ``attn_norm``, ``W_Q`` and ``W_K``.

    The model computes ``softcap(scale · rot_m(q_norm(x_m W_Q + b_Q)) · rot_n(k_norm(x_n W_K + b_K)))``
    for a query at position m and a key at position n.
    """

    b_Q: Float[Tensor, "n_heads hd"] | None
    b_K: Float[Tensor, "n_kv hd"] | None
    q_norm: Norm | None
    """A per-head RMSNorm over ``hd`` applied to queries before the rotary (Qwen3, Gemma 3)."""
    k_norm: Norm | None
    scale: float
    """The multiplier of ``q·k``: ``1/sqrt(hd)``, Gemma's ``query_pre_attn_scalar ** -0.5``, GPT-2's
    optional ``1/(layer+1)``."""
    softcap: float | None
    """Gemma 2's ``cap · tanh(logit / cap)`` on the attention logits (monotonic), else None."""
    rotary: Rotary | None
    """The layer's rotary embedding; None where positions are learned embeddings added to the
    residual (GPT-2), which the QK weights alone cannot see."""


def rms_norm(module: nn.Module, eps: float, offset: float = 0.0) -> Norm:
    """A ``Norm`` from an RMSNorm module; Gemma stores ``w`` and multiplies by ``1 + w``."""
    return Norm("rms", module.weight.detach().float() + offset, None, float(eps))


def layer_norm(module: nn.LayerNorm) -> Norm:
    bias = module.bias.detach().float() if module.bias is not None else None
    return Norm("layer", module.weight.detach().float(), bias, float(module.eps))


def split_heads_in_out(w: Tensor, n: int, hd: int) -> Float[Tensor, "n d hd"]:
    """A ``[n*hd, d]`` nn.Linear weight (out, in) to per-head ``[n, d, hd]`` (in, out)."""
    return w.detach().float().view(n, hd, -1).transpose(1, 2).contiguous()


def split_out_proj(w: Tensor, n: int, hd: int) -> Float[Tensor, "n hd d"]:
    """A ``[d, n*hd]`` nn.Linear output-projection weight to per-head ``[n, hd, d]``."""
    return w.detach().float().T.reshape(n, hd, -1).contiguous()


def split_bias(b: Tensor | None, n: int, hd: int) -> Tensor | None:
    return None if b is None else b.detach().float().view(n, hd)


def rotary_of(module: nn.Module, carrier: Tensor, *args: object) -> Rotary:
    """A ``Rotary`` from a transformers rotary-embedding module, called as the model calls it:
    ``module(x, position_ids, *args)``, where ``x`` only gives the dtype and device."""

    def at(positions: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            cos, sin = module(carrier, positions.to(carrier.device)[None], *args)
        return cos[0].float(), sin[0].float()

    return at
