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
