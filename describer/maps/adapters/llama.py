"""Llama 2/3, Mistral, Qwen2 and Qwen3: separate q/k/v/o projections, RMSNorm, gated MLP.

Qwen2 adds biases to q/k/v; Qwen3 adds per-head RMSNorms on queries and keys, which only
touch the QK circuit and so leave the OV circuit MAPS reads unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from describer.maps.adapters.base import (
    Adapter,
    LayerWeights,
    Norm,
    QKExtras,
    rms_norm,
    rotary_of,
    split_bias,
    split_heads_in_out,
    split_out_proj,
)


class LlamaAdapter(Adapter):
    model_types = ("llama", "mistral", "qwen2", "qwen3")
    norm_offset = 0.0

    @property
    def _body(self) -> nn.Module:
        return self.model.model

    def _eps(self) -> float:
        return float(self.config.rms_norm_eps)

    def embedding_module(self) -> nn.Embedding:
        return self._body.embed_tokens

    def unembedding_module(self) -> nn.Linear:
        return self.model.lm_head

    def final_norm(self) -> Norm:
        return rms_norm(self._body.norm, self._eps(), self.norm_offset)

    def block_module(self, index: int) -> nn.Module:
        return self._body.layers[index]

    def attention_module(self, index: int) -> nn.Module:
        return self._body.layers[index].self_attn

    def out_proj_module(self, index: int) -> nn.Module:
        return self.attention_module(index).o_proj

    def layer(self, index: int) -> LayerWeights:
        block = self._body.layers[index]
        attn = block.self_attn
        hd, nh, nkv = self.head_dim, self.n_heads, self.n_kv_heads
        return LayerWeights(
            attn_norm=rms_norm(block.input_layernorm, self._eps(), self.norm_offset),
            W_Q=split_heads_in_out(attn.q_proj.weight, nh, hd),
            W_K=split_heads_in_out(attn.k_proj.weight, nkv, hd),
            W_V=split_heads_in_out(attn.v_proj.weight, nkv, hd),
            b_V=split_bias(attn.v_proj.bias, nkv, hd),
            W_O=split_out_proj(attn.o_proj.weight, nh, hd),
            b_O=None if attn.o_proj.bias is None else attn.o_proj.bias.detach().float(),
            post_attn_norm=self._post_attn_norm(block),
        )

    def qk_extras(self, index: int) -> QKExtras:
        attn = self.attention_module(index)
        b_q, b_k = self._qk_biases(attn)
        q_norm, k_norm = (getattr(attn, name, None) for name in ("q_norm", "k_norm"))
        return QKExtras(
            b_Q=split_bias(b_q, self.n_heads, self.head_dim),
            b_K=split_bias(b_k, self.n_kv_heads, self.head_dim),
            q_norm=None if q_norm is None else rms_norm(q_norm, self._eps(), self.norm_offset),
            k_norm=None if k_norm is None else rms_norm(k_norm, self._eps(), self.norm_offset),
            scale=float(attn.scaling),
            softcap=self._attn_softcap(attn),
            rotary=rotary_of(
                self._body.rotary_emb, self.embedding_module().weight[:1], *self._rotary_args(index)
            ),
        )

    def _qk_biases(self, attn: nn.Module) -> tuple[Tensor | None, Tensor | None]:
        return attn.q_proj.bias, attn.k_proj.bias

    def _attn_softcap(self, attn: nn.Module) -> float | None:
        return None

    def _rotary_args(self, index: int) -> tuple[object, ...]:
        return ()

    def _post_attn_norm(self, block: nn.Module) -> Norm | None:
        return None

    def mlp0_pre_norm(self) -> Norm:
        # In Llama-style blocks "post_attention_layernorm" is the norm *before* the MLP.
        return rms_norm(self._body.layers[0].post_attention_layernorm, self._eps(), self.norm_offset)

    def mlp0_module(self) -> Callable[[Tensor], Tensor]:
        return self._body.layers[0].mlp
