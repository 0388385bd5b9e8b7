"""The per-architecture view of a model's weights that the MAPS analysis reads.

An adapter is the only place that knows a family's parameter names, fused projections,
norm conventions and scaling quirks. Everything it returns is float32 on the model's
device and follows one convention: activations are row vectors, so a projection is
``x @ W`` with ``W`` shaped ``[in, out]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn


class UnsupportedArchitecture(ValueError):
    """The model's ``config.model_type`` has no adapter."""


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


class Adapter(ABC):
    """Reads one family of ``transformers`` causal LMs. Subclasses register by model type."""

    model_types: ClassVar[tuple[str, ...]] = ()
    registry: ClassVar[dict[str, type[Adapter]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for model_type in cls.model_types:
            Adapter.registry[model_type] = cls

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.config = getattr(model.config, "text_config", None) or model.config

    # --- shapes -----------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def n_kv_heads(self) -> int:
        return int(getattr(self.config, "num_key_value_heads", None) or self.n_heads)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def head_dim(self) -> int:
        return int(getattr(self.config, "head_dim", None) or self.d_model // self.n_heads)

    @property
    def vocab_size(self) -> int:
        return int(self.embedding_module().weight.shape[0])

    def kv_head(self, head: int) -> int:
        """The key/value head that query head ``head`` reads (grouped-query attention)."""
        return head // (self.n_heads // self.n_kv_heads)

    # --- what each family must say ------------------------------------------------------
    @abstractmethod
    def embedding_module(self) -> nn.Embedding:
        """The token embedding module."""

    def embedding_scale(self) -> float:
        """Multiplier the model applies to token embeddings before layer 0."""
        return 1.0

    @abstractmethod
    def unembedding_module(self) -> nn.Linear:
        """The LM head (``weight`` is ``[vocab, d]``)."""

    @abstractmethod
    def final_norm(self) -> Norm:
        """The norm before the LM head."""

    @abstractmethod
    def layer(self, index: int) -> LayerWeights:
        """Attention weights of layer ``index``."""

    def qk_extras(self, index: int) -> QKExtras:
        """Layer ``index``'s query/key biases, q/k norms, logit scale, soft-cap and rotary."""
        raise NotImplementedError(f"{type(self).__name__} does not read the QK circuit")

    @abstractmethod
    def attention_module(self, index: int) -> nn.Module:
        """The attention module of layer ``index`` (for hooks)."""

    @abstractmethod
    def out_proj_module(self, index: int) -> nn.Module:
        """The output projection of layer ``index``; its input is the heads' outputs, concatenated."""

    @abstractmethod
    def mlp0_pre_norm(self) -> Norm:
        """The norm block 0 applies before its MLP."""

    def mlp0_post_norm(self) -> Norm | None:
        """A norm block 0 applies to its MLP output (Gemma 2/3), else None."""
        return None

    @abstractmethod
    def mlp0_module(self) -> Callable[[Tensor], Tensor]:
        """Block 0's MLP, mapping ``[..., d]`` to ``[..., d]``."""

    def final_logit_softcap(self) -> float | None:
        """Gemma 2's ``cap * tanh(logits / cap)``; monotonic, so it changes no ranking."""
        return None

    # --- derived, shared by every family -------------------------------------------------
    def embedding(self) -> Float[Tensor, "vocab d"]:
        """Token embeddings as layer 0 receives them (positions not added)."""
        weight = self.embedding_module().weight.float()
        scale = self.embedding_scale()
        if scale != 1.0:
            # The model rounds the scale to its own dtype; do the same to match it exactly.
            scale = float(torch.tensor(scale, dtype=self.embedding_module().weight.dtype))
            weight = weight * scale
        return weight

    def unembedding(self) -> Float[Tensor, "d vocab"]:
        """The LM head as a ``[d, vocab]`` matrix, final norm not folded."""
        return self.unembedding_module().weight.float().T

    def mlp0(self, x: Float[Tensor, "... d"], *, pre_norm: bool, post_norm: bool) -> Float[Tensor, "... d"]:
        """Block 0's MLP applied to ``x``, after its pre-MLP norm with ``pre_norm`` and followed by
        its post-MLP norm (Gemma 2/3 only) with ``post_norm``."""
        if pre_norm:
            x = self.mlp0_pre_norm()(x)
        y = self.mlp0_module()(x)
        post = self.mlp0_post_norm()
        if post_norm and post is not None:
            y = post(y)
        return y


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


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter for ``model``, chosen by ``config.model_type``."""
    config = model.config
    model_type = getattr(config, "model_type", None)
    cls = Adapter.registry.get(model_type or "")
    if cls is None:
        text = getattr(config, "text_config", None)
        cls = Adapter.registry.get(getattr(text, "model_type", "") or "")
    if cls is None:
        raise UnsupportedArchitecture(
            f"unsupported architecture {model_type!r}; supported families: {', '.join(supported_families())}"
        )
    return cls(model)


def supported_families() -> list[str]:
    return sorted(Adapter.registry)
