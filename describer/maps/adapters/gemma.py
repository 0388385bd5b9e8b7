"""Gemma 1, 2 and 3 (text): Llama-like blocks with Gemma's conventions.

- RMSNorm multiplies by ``1 + w``;
- token embeddings are scaled by ``sqrt(d_model)`` (rounded to the weights' dtype);
- Gemma 2/3 sandwich each sub-block: a norm on the attention output before the residual
  add (folded into ``W_O`` by MAPS), and pre/post norms around the MLP;
- Gemma 2 soft-caps the final logits (monotonic, so rankings are unchanged).
"""

from __future__ import annotations

import math

from torch import nn

from describer.maps.adapters.base import Norm, rms_norm
from describer.maps.adapters.llama import LlamaAdapter


class GemmaAdapter(LlamaAdapter):
    model_types = ("gemma",)
    norm_offset = 1.0

    def embedding_scale(self) -> float:
        return math.sqrt(self.d_model)


class Gemma2Adapter(GemmaAdapter):
    model_types = ("gemma2", "gemma3_text", "gemma3")

    def _post_attn_norm(self, block: nn.Module) -> Norm | None:
        # Here "post_attention_layernorm" really is applied to the attention output.
        return rms_norm(block.post_attention_layernorm, self._eps(), self.norm_offset)

    def _attn_softcap(self, attn: nn.Module) -> float | None:
        # Gemma 2 passes its attention soft-cap to the attention function; Gemma 3's attention
        # keeps the config value as an attribute but never applies it.
        if self.config.model_type != "gemma2":
            return None
        cap = getattr(attn, "attn_logit_softcapping", None)
        return None if cap is None else float(cap)

    def _rotary_args(self, index: int) -> tuple[object, ...]:
        # Gemma 3 has one rotary per layer type (local sliding-window layers and global layers
        # use different bases); the model passes the layer's type to its rotary module.
        layer_types = getattr(self.config, "layer_types", None)
        if self.config.model_type == "gemma2" or not layer_types:
            return ()
        return (layer_types[index],)

    def mlp0_pre_norm(self) -> Norm:
        return rms_norm(self._body.layers[0].pre_feedforward_layernorm, self._eps(), self.norm_offset)

    def mlp0_post_norm(self) -> Norm | None:
        return rms_norm(self._body.layers[0].post_feedforward_layernorm, self._eps(), self.norm_offset)

    def final_logit_softcap(self) -> float | None:
        return getattr(self.config, "final_logit_softcapping", None)

    @property
    def _body(self) -> nn.Module:
        body = self.model.model
        # Gemma3ForConditionalGeneration nests the text model one level deeper.
        return getattr(body, "language_model", body)
