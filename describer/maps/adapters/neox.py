"""GPT-NeoX (Pythia): fused, per-head interleaved ``query_key_value``, LayerNorm, biases.

- ``query_key_value``'s output is viewed as ``[n_heads, 3 * hd]`` and each head's slice is
  chunked into q, k, v, so its rows run ``q_0 k_0 v_0 q_1 k_1 v_1 ...``, not ``Q K V``;
- with ``use_parallel_residual`` (Pythia's default) attention and MLP both read the layer's
  input residual, so "post_attention_layernorm" is the pre-MLP norm applied to that input;
- ``head_dim`` is always ``hidden_size // num_attention_heads`` here;
- rotary is partial (``rotary_pct``), which only touches the QK circuit;
- transformers 5 calls the LM head ``lm_head`` (checkpoints' ``embed_out`` is renamed on load).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from describer.maps.adapters.base import (
    Adapter,
    LayerWeights,
    Norm,
    QKExtras,
    layer_norm,
    rotary_of,
    split_out_proj,
)


class NeoXAdapter(Adapter):
    model_types = ("gpt_neox",)

    @property
    def _body(self) -> nn.Module:
        return self.model.gpt_neox

    @property
    def head_dim(self) -> int:
        # The attention module ignores any config.head_dim and always splits hidden_size evenly.
        return self.d_model // self.n_heads

    def embedding_module(self) -> nn.Embedding:
        return self._body.embed_in

    def unembedding_module(self) -> nn.Linear:
        head = getattr(self.model, "lm_head", None)
        return head if head is not None else self.model.embed_out

    def final_norm(self) -> Norm:
        return layer_norm(self._body.final_layer_norm)

    def block_module(self, index: int) -> nn.Module:
        return self._body.layers[index]

    def attention_module(self, index: int) -> nn.Module:
        return self._body.layers[index].attention

    def out_proj_module(self, index: int) -> nn.Module:
        return self.attention_module(index).dense

    def layer(self, index: int) -> LayerWeights:
        block = self._body.layers[index]
        attn = block.attention
        nh, hd = self.n_heads, self.head_dim
        # [3d, d] rows -> [head, (q|k|v), hd, d]: the interleaved per-head layout described above.
        qkv = attn.query_key_value.weight.detach().float().view(nh, 3, hd, -1).transpose(2, 3)
        bias = attn.query_key_value.bias
        b_v = None if bias is None else bias.detach().float().view(nh, 3, hd)[:, 2]
        dense = attn.dense
        return LayerWeights(
            attn_norm=layer_norm(block.input_layernorm),
            W_Q=qkv[:, 0].contiguous(),
            W_K=qkv[:, 1].contiguous(),
            W_V=qkv[:, 2].contiguous(),
            b_V=None if b_v is None else b_v.contiguous(),
            W_O=split_out_proj(dense.weight, nh, hd),
            b_O=None if dense.bias is None else dense.bias.detach().float(),
            post_attn_norm=None,
        )

    def qk_extras(self, index: int) -> QKExtras:
        attn = self.attention_module(index)
        bias = attn.query_key_value.bias
        b = None if bias is None else bias.detach().float().view(self.n_heads, 3, self.head_dim)
        return QKExtras(
            b_Q=None if b is None else b[:, 0].contiguous(),
            b_K=None if b is None else b[:, 1].contiguous(),
            q_norm=None,
            k_norm=None,
            scale=float(attn.scaling),
            softcap=None,
            # The rotary module's cos/sin cover only the first rotary_ndims dims of each head.
            rotary=rotary_of(self._body.rotary_emb, self.embedding_module().weight[:1]),
        )

    def mlp0_pre_norm(self) -> Norm:
        return layer_norm(self._body.layers[0].post_attention_layernorm)

    def mlp0_module(self) -> Callable[[Tensor], Tensor]:
        return self._body.layers[0].mlp
