"""The per-architecture view of a model's weights that the MAPS analysis reads.

An adapter is the only place that knows a family's parameter names, fused projections,
norm conventions and scaling quirks. Everything it returns is float32 on the model's
device and follows one convention: activations are row vectors, so a projection is
``x @ W`` with ``W`` shaped ``[in, out]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor, nn

from describer.errors import HeadmapsError
from describer.maps.adapters.views import (  # noqa: F401  (re-exported: the adapters import them from here)
    LayerWeights,
    Norm,
    QKExtras,
    Rotary,
    layer_norm,
    rms_norm,
    rotary_of,
    split_bias,
    split_heads_in_out,
    split_out_proj,
)
from describer.maps.tensors import ModuleTensors, TensorSource

if TYPE_CHECKING:
    from describer.maps.streaming import Materializer

MLP_ELEMENTS = 1 << 22
"""Block 0's MLP runs on at most this many hidden activations at a time (16 MB of floats): its
transient activations, not the chunk of tokens, then set its share of the peak."""


class UnsupportedArchitecture(ValueError):
    """The model's ``config.model_type`` has no adapter."""


class Adapter(ABC):
    """Reads one family of ``transformers`` causal LMs. Subclasses register by model type."""

    model_types: ClassVar[tuple[str, ...]] = ()
    registry: ClassVar[dict[str, type[Adapter]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for model_type in cls.model_types:
            Adapter.registry[model_type] = cls

    def __init__(
        self, model: nn.Module, tensors: TensorSource | None = None, weights: Materializer | None = None
    ) -> None:
        self.model = model
        """The loaded model, or a skeleton whose blocks ``weights`` loads on demand."""
        self.config = getattr(model.config, "text_config", None) or model.config
        self.tensors = tensors if tensors is not None else ModuleTensors(model)
        """Where the embedding and unembedding rows are read from."""
        self.weights = weights
        self._qualnames: dict[int, str] | None = None
        self._names: dict[str, str | None] = {}

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
    def d_mlp(self) -> int:
        """The width of an MLP's hidden activations (GPT-2: ``n_inner``, default 4·d)."""
        c = self.config
        return int(getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * self.d_model)

    @property
    def head_dim(self) -> int:
        return int(getattr(self.config, "head_dim", None) or self.d_model // self.n_heads)

    @property
    def vocab_size(self) -> int:
        return int(self.embedding_module().weight.shape[0])

    def kv_head(self, head: int) -> int:
        """The key/value head that query head ``head`` reads (grouped-query attention)."""
        return head // (self.n_heads // self.n_kv_heads)

    # --- streamed weights ---------------------------------------------------------------------
    @property
    def streamed(self) -> bool:
        return self.weights is not None

    def block_prefix(self, index: int) -> str:
        """Block ``index``'s parameter prefix, e.g. ``model.layers.3.``."""
        return self._qualname(self.block_module(index)) + "."

    def layer_weights(self, index: int) -> AbstractContextManager[None]:
        """Layer ``index``'s attention weights and norms readable for the ``with`` body."""
        return nullcontext() if self.weights is None else self.weights.block(index)

    def block0_weights(self) -> AbstractContextManager[None]:
        """All of block 0 (its MLP included) readable for the ``with`` body."""
        return nullcontext() if self.weights is None else self.weights.block(0, attention_only=False)

    def running(self) -> AbstractContextManager[None]:
        """Every block available to a forward pass of ``model`` for the ``with`` body."""
        return nullcontext() if self.weights is None else self.weights.running()

    def _qualname(self, module: nn.Module) -> str:
        if self._qualnames is None:
            self._qualnames = {id(m): n for n, m in self.model.named_modules(remove_duplicate=False)}
        return self._qualnames[id(module)]

    def embedding_name(self) -> str:
        return self._source_name(self._qualname(self.embedding_module()) + ".weight")

    def unembedding_name(self) -> str:
        """The LM head's tensor; the embedding's where the checkpoint ties them and omits it."""
        name = self._qualname(self.unembedding_module()) + ".weight"
        found = self._find(name)
        tied = self.unembedding_module().weight is self.embedding_module().weight or getattr(
            self.model.config, "tie_word_embeddings", False
        )
        if found is None and tied:
            return self.embedding_name()
        return self._source_name(name)

    def _find(self, name: str) -> str | None:
        if name not in self._names:
            if self.weights is not None:
                try:
                    self._names[name] = self.weights.source_name(name)
                except HeadmapsError:
                    self._names[name] = None
            else:
                self._names[name] = self.tensors.find(name)
        return self._names[name]

    def _source_name(self, name: str) -> str:
        found = self._find(name)
        if found is None:
            raise UnsupportedArchitecture(f"{self.tensors.path}: no tensor {name!r}")
        return found

    def _rows(self, name: str, ids: Tensor | slice) -> Tensor:
        if isinstance(ids, slice):
            return self.tensors.rows(name, ids.start or 0, ids.stop)
        return self.tensors.take(name, ids.cpu() if ids.device.type != "cpu" else ids)

    def embedding_rows(self, ids: Tensor | slice, device: torch.device | str = "cpu") -> Float[Tensor, "n d"]:
        """Token embeddings of ``ids`` as layer 0 receives them, float32 on ``device``."""
        rows = self._rows(self.embedding_name(), ids).to(device).to(torch.float32)  # converted there
        scale = self.embedding_scale()
        if scale != 1.0:
            # The model rounds the scale to its own dtype; do the same to match it exactly.
            rows = rows * float(torch.tensor(scale, dtype=self.embedding_module().weight.dtype))
        return rows

    def unembedding_rows(
        self, ids: Tensor | slice, device: torch.device | str = "cpu"
    ) -> Float[Tensor, "n d"]:
        """Rows of the LM head (``[n, d]``), float32 on ``device``, final norm not folded."""
        return self._rows(self.unembedding_name(), ids).to(device).to(torch.float32)

    def forward_inputs(self, ids: Tensor) -> dict[str, Tensor]:
        """The keyword arguments that feed ``ids`` to the base model: the ids themselves for a
        loaded model, their embeddings (read from the files) for a streamed one."""
        if self.weights is None:
            return {"input_ids": ids}
        return {"inputs_embeds": self.input_embeddings(ids)}

    def input_embeddings(self, ids: Tensor) -> Tensor:
        """What the model's embedding module returns for ``ids`` (any shape), in the model's
        dtype on ``ids``' device: forward passes take these as ``inputs_embeds`` so a streamed
        embedding never has to be loaded whole."""
        flat = self.embedding_rows(ids.reshape(-1), ids.device)
        return flat.to(self.embedding_module().weight.dtype).view(*ids.shape, -1)

    # --- what each family must say ------------------------------------------------------
    @abstractmethod
    def block_module(self, index: int) -> nn.Module:
        """The decoder block ``index`` (attention, MLP and their norms)."""

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
        return self.embedding_rows(slice(0, self.vocab_size), self.embedding_module().weight.device)

    def unembedding(self) -> Float[Tensor, "d vocab"]:
        """The LM head as a ``[d, vocab]`` matrix, final norm not folded."""
        return self.unembedding_rows(slice(0, self.vocab_size), self.embedding_module().weight.device).T

    def mlp0(self, x: Float[Tensor, "... d"], *, pre_norm: bool, post_norm: bool) -> Float[Tensor, "... d"]:
        """Block 0's MLP applied to ``x``, after its pre-MLP norm with ``pre_norm`` and followed by
        its post-MLP norm (Gemma 2/3 only) with ``post_norm``."""
        if pre_norm:
            x = self.mlp0_pre_norm()(x)
        # The MLP runs in the model's dtype (``--dtype``); everything around it in float32. Rows
        # go in pieces whose hidden activations fit MLP_ELEMENTS: a 7B model's 18,944-wide MLP
        # over a chunk of 8,192 tokens would hold three 620 MB activations at once.
        dtype = self.embedding_module().weight.dtype
        mlp = self.mlp0_module()
        flat = x.reshape(-1, x.shape[-1])
        rows = max(16, MLP_ELEMENTS // max(self.d_mlp, 1))
        y = torch.cat([mlp(part.to(dtype)).float() for part in flat.split(rows)]) if len(flat) else flat
        y = y.reshape(*x.shape[:-1], y.shape[-1])
        post = self.mlp0_post_norm()
        if post_norm and post is not None:
            y = post(y)
        return y


def _adapter_class(config: object) -> type[Adapter]:
    """The adapter class reading ``config`` (its ``model_type``, or its text config's for a
    multimodal wrapper); ``UnsupportedArchitecture`` when none does."""
    types = [
        getattr(config, "model_type", None),
        getattr(getattr(config, "text_config", None), "model_type", None),
    ]
    for name in types:
        if name and name in Adapter.registry:
            return Adapter.registry[name]
    raise UnsupportedArchitecture(
        f"unsupported architecture {types[0]!r}; supported families: {', '.join(supported_families())}"
    )


def check_family(config: object) -> None:
    """Refuse a config no adapter reads (before anything is built from it)."""
    _adapter_class(config)


def adapter_for(
    model: nn.Module, tensors: TensorSource | None = None, weights: Materializer | None = None
) -> Adapter:
    """The adapter for ``model`` (a loaded model, or a skeleton with the ``tensors`` it streams
    from and the ``weights`` that load its blocks), chosen by ``config.model_type``."""
    return _adapter_class(model.config)(model, tensors, weights)


def supported_families() -> list[str]:
    return sorted(Adapter.registry)
