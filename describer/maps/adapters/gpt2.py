"""GPT-2: fused ``c_attn``, LayerNorm, biases everywhere, learned absolute positions.

- ``Conv1D`` stores its weight as ``[in, out]`` (the transpose of ``nn.Linear``), so the
  fused ``c_attn`` is ``[d, 3d]`` with q, k, v side by side in its columns;
- position embeddings (``wpe``) are added to the residual before layer 0 but belong to
  positions, not tokens, so ``embedding()`` leaves them out;
- ``scale_attn_by_inverse_layer_idx`` and ``reorder_and_upcast_attn`` only touch the QK
  circuit, never the OV circuit MAPS reads.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from describer.maps.adapters.base import Adapter, LayerWeights, Norm, QKExtras, layer_norm


def _conv1d_heads(w: Tensor, n: int, hd: int) -> Tensor:
    """A ``[d, n*hd]`` Conv1D weight slice (already in, out) to per-head ``[n, d, hd]``."""
    return w.detach().float().reshape(w.shape[0], n, hd).permute(1, 0, 2).contiguous()


class GPT2Adapter(Adapter):
    model_types = ("gpt2",)
    # GPT2Config maps num_hidden_layers/num_attention_heads/hidden_size onto n_layer/n_head/
    # n_embd through its attribute_map, so the base class's shape properties work unchanged.

    @property
    def _body(self) -> nn.Module:
        return self.model.transformer

    def embedding_module(self) -> nn.Embedding:
        return self._body.wte

    def unembedding_module(self) -> nn.Linear:
        return self.model.lm_head

    def final_norm(self) -> Norm:
        return layer_norm(self._body.ln_f)

    def block_module(self, index: int) -> nn.Module:
        return self._body.h[index]

    def attention_module(self, index: int) -> nn.Module:
        return self._body.h[index].attn

    def out_proj_module(self, index: int) -> nn.Module:
        return self.attention_module(index).c_proj

    def layer(self, index: int) -> LayerWeights:
        block = self._body.h[index]
        attn = block.attn
        d, nh, hd = self.d_model, self.n_heads, self.head_dim
        w_q, w_k, w_v = attn.c_attn.weight.split(d, dim=1)
        b_v = attn.c_attn.bias.split(d)[2]
        return LayerWeights(
            attn_norm=layer_norm(block.ln_1),
            W_Q=_conv1d_heads(w_q, nh, hd),
            W_K=_conv1d_heads(w_k, nh, hd),
            W_V=_conv1d_heads(w_v, nh, hd),
            b_V=b_v.detach().float().view(nh, hd),
            # Conv1D rows are its inputs, so the rows of head h are already that head's W_O.
            W_O=attn.c_proj.weight.detach().float().reshape(nh, hd, d).contiguous(),
            b_O=attn.c_proj.bias.detach().float(),
            post_attn_norm=None,
        )

    def qk_extras(self, index: int) -> QKExtras:
        attn = self.attention_module(index)
        d, nh, hd = self.d_model, self.n_heads, self.head_dim
        b_q, b_k, _ = attn.c_attn.bias.detach().float().split(d)
        return QKExtras(
            b_Q=b_q.view(nh, hd),
            b_K=b_k.view(nh, hd),
            q_norm=None,
            k_norm=None,
            # 1/sqrt(hd) unless scale_attn_weights is off, then / (layer + 1) with
            # scale_attn_by_inverse_layer_idx: the module's own product of the two.
            scale=float(attn.scaling),
            softcap=None,
            rotary=None,  # learned absolute positions (wpe), added to the residual before layer 0
        )

    def mlp0_pre_norm(self) -> Norm:
        return layer_norm(self._body.h[0].ln_2)

    def mlp0_module(self) -> Callable[[Tensor], Tensor]:
        return self._body.h[0].mlp
