"""Phi-3 / Phi-4-mini: Llama-like blocks with fused projections.

- ``qkv_proj`` stacks its rows as ``[Q (n_heads*hd); K (n_kv*hd); V (n_kv*hd)]``, blockwise,
  unlike NeoX's per-head interleaving;
- the MLP fuses gate and up into ``gate_up_proj``; the module is used as a whole, so only
  the attention weights need splitting;
- partial rotary (Phi-4-mini) and LongRoPE only touch the QK circuit.
"""

from __future__ import annotations

from torch import Tensor, nn

from describer.maps.adapters.base import (
    LayerWeights,
    rms_norm,
    split_bias,
    split_heads_in_out,
    split_out_proj,
)
from describer.maps.adapters.llama import LlamaAdapter


class Phi3Adapter(LlamaAdapter):
    model_types = ("phi3",)

    def layer(self, index: int) -> LayerWeights:
        block = self._body.layers[index]
        attn = block.self_attn
        hd, nh, nkv = self.head_dim, self.n_heads, self.n_kv_heads
        w_q, w_k, w_v = attn.qkv_proj.weight.split([nh * hd, nkv * hd, nkv * hd], dim=0)
        bias = attn.qkv_proj.bias
        b_v = None if bias is None else bias.split([nh * hd, nkv * hd, nkv * hd])[2]
        return LayerWeights(
            attn_norm=rms_norm(block.input_layernorm, self._eps()),
            W_Q=split_heads_in_out(w_q, nh, hd),
            W_K=split_heads_in_out(w_k, nkv, hd),
            W_V=split_heads_in_out(w_v, nkv, hd),
            b_V=split_bias(b_v, nkv, hd),
            W_O=split_out_proj(attn.o_proj.weight, nh, hd),
            b_O=None if attn.o_proj.bias is None else attn.o_proj.bias.detach().float(),
            post_attn_norm=None,
        )

    def _qk_biases(self, attn: nn.Module) -> tuple[Tensor | None, Tensor | None]:
        bias = attn.qkv_proj.bias
        if bias is None:
            return None, None
        nq, nkv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        b_q, b_k, _ = bias.split([nq, nkv, nkv])
        return b_q, b_k
