"""Weights read when they are used: a model skeleton whose parameters stay on disk.

The skeleton is the family's own ``transformers`` model built on the meta device (parameters
have shapes and no storage; buffers such as rotary frequencies are real). The adapters read it
exactly as they read a loaded model, and ``Materializer`` fills in one block's parameters from
a ``TensorSource`` (safetensors shards, a GGUF file) just before they are read, converted from
the stored dtype to the compute dtype, and drops them afterwards. Peak memory is then one
block, whatever the number of layers.

The embedding and the unembedding are never materialised here: the analyzer reads them from
the source in vocabulary chunks (``Adapter.embedding_rows``), and forward passes get their
input embeddings the same way (``inputs_embeds``), so neither ever sits in memory whole.

Small models are kept whole once a forward pass needs them (``resident_bytes``): loading every
block once is cheaper than loading each block for every batch. On a GPU the budget is a share of
the device's free memory (``resident_budget``), so an 8B model's blocks cross from the host once
per stage of forward passes, not once per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from describer.errors import HeadmapsError
from describer.maps.memory import trim
from describer.maps.tensors import TensorSource

RESIDENT_BYTES = 256 << 20
"""Blocks (in the compute dtype) up to this size are loaded together for a run of forward passes
(``Materializer.running``), and dropped when it ends."""

DEVICE_BLOCK_SHARE = 0.5
"""On a GPU, a stage of forward passes keeps every block on the device when together, in the
compute dtype, they fit this share of the device's free memory when the model is opened (an 8B
model's float32 blocks, 29 GB, fit an 80 GB card)."""
DEVICE_VOCAB_SHARE = 0.25
"""On a GPU, the embedding and unembedding stay on the device once read (``DeviceCached``) within
this share of its free memory when the model is opened."""

_PREFIX_SWAPS = (
    # transformers' module names → names older checkpoints store the same tensors under.
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
    ("lm_head.", "embed_out."),
)


class Materializer:
    """Loads and drops a skeleton's parameters by module prefix."""

    def __init__(
        self,
        skeleton: nn.Module,
        tensors: TensorSource,
        *,
        blocks: Sequence[str],
        vocab_names: Sequence[str],
        device: torch.device,
        resident_bytes: int = RESIDENT_BYTES,
    ) -> None:
        self.skeleton = skeleton
        self.tensors = tensors
        self.blocks = list(blocks)
        """Each block's parameter prefix, e.g. ``model.layers.3.``."""
        self.device = device
        self.resident_bytes = resident_bytes
        self.loads = 0
        """Tensors read from the source so far (tests check that blocks are not re-read)."""
        self._params = dict(skeleton.named_parameters(remove_duplicate=False))
        self._pinned: set[str] = set()
        self._open: dict[str, int] = {}
        """How many ``block`` bodies hold each prefix (nested holds load once, drop at the last)."""
        vocab = set(vocab_names)
        outside = [
            name
            for name in self._params
            if name not in vocab and not any(name.startswith(p) for p in self.blocks)
        ]
        self._load(outside)  # the final norm, GPT-2's position embeddings: small, always needed

    # --- names ----------------------------------------------------------------------------
    def source_name(self, name: str) -> str:
        """The source's name for the skeleton's parameter ``name``."""
        candidates = [name] + [name.replace(a, b, 1) for a, b in _PREFIX_SWAPS if name.startswith(a)]
        found = self.tensors.find(*candidates)
        if found is None:
            raise HeadmapsError(f"{self.tensors.path}: no tensor {name!r} (the model's config needs it)")
        return found

    # --- loading ----------------------------------------------------------------------------
    def _load(self, names: Sequence[str]) -> None:
        for name in names:
            param = self._params[name]
            if not param.is_meta:
                continue
            src = self.source_name(name)
            stored = self.tensors.shape(src)
            if tuple(stored) != tuple(param.shape):
                raise HeadmapsError(
                    f"{self.tensors.path}: tensor {src!r} has shape {tuple(stored)}, the config implies "
                    f"{tuple(param.shape)}"
                )
            # Moved in the stored dtype, then converted where it lands: a GPU converts, and a
            # bf16 tensor crosses at half the bytes of its float32 copy.
            value = self.tensors.get(src).to(self.device).to(param.dtype)
            self._set(name, nn.Parameter(value, requires_grad=False))
            self.loads += 1

    def _set(self, name: str, param: nn.Parameter) -> None:
        owner, _, leaf = name.rpartition(".")
        module = self.skeleton.get_submodule(owner) if owner else self.skeleton
        module._parameters[leaf] = param
        self._params[name] = param

    def _drop(self, names: Sequence[str]) -> None:
        for name in names:
            param = self._params[name]
            if not param.is_meta:
                empty = torch.empty(param.shape, dtype=param.dtype, device="meta")
                self._set(name, nn.Parameter(empty, requires_grad=False))

    def _names(self, prefix: str, skip: str | None) -> list[str]:
        return [n for n in self._params if n.startswith(prefix) and (skip is None or skip not in n)]

    @contextmanager
    def block(self, index: int, *, attention_only: bool = True) -> Iterator[None]:
        """Block ``index``'s parameters loaded for the body of the ``with`` (its MLP too unless
        ``attention_only``); a block kept whole (``keep_all``) stays loaded."""
        prefix = self.blocks[index]
        if prefix in self._pinned:
            yield
            return
        key = prefix + ("attention" if attention_only else "all")
        names = self._names(prefix, ".mlp." if attention_only else None)
        self._load(names)
        self._open[key] = self._open.get(key, 0) + 1
        try:
            yield
        finally:
            self._open[key] -= 1
            held = any(self._open.get(prefix + part) for part in ("attention", "all"))
            if not held and prefix not in self._pinned:  # pinned meanwhile by ``running``
                self._drop(self._names(prefix, None))

    def block_bytes(self) -> int:
        """Every block's parameters in the compute dtype."""
        return sum(
            p.numel() * p.element_size()
            for n, p in self._params.items()
            if any(n.startswith(b) for b in self.blocks)
        )

    @contextmanager
    def running(self) -> Iterator[None]:
        """Every block available to the forward passes of the ``with`` body: loaded once for the
        body and dropped after it when they fit ``resident_bytes`` (a ``running`` inside another
        uses the outer one's), else each block loaded by a hook just before it runs and dropped
        after. So no block stays in memory between stages: the head mappings, which need one
        layer's attention weights at a time, run beside the chunks alone."""
        if len(self._pinned) == len(self.blocks):
            yield
            return
        if self.block_bytes() <= self.resident_bytes:
            self.keep_all()
            try:
                yield
            finally:
                self.release()
            return
        handles = []
        for prefix in self.blocks:
            module = self.skeleton.get_submodule(prefix.rstrip("."))
            names = self._names(prefix, None)
            handles.append(module.register_forward_pre_hook(_loader(self, names)))
            handles.append(module.register_forward_hook(_dropper(self, names)))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def keep_all(self) -> None:
        """Load every block and keep it until ``release``."""
        for prefix in self.blocks:
            self._load(self._names(prefix, None))
            self._pinned.add(prefix)

    def release(self) -> None:
        """Drop the blocks ``keep_all`` kept (those a ``block`` body still holds stay)."""
        for prefix in list(self._pinned):
            self._pinned.discard(prefix)
            if not any(self._open.get(prefix + part) for part in ("attention", "all")):
                self._drop(self._names(prefix, None))
        trim()  # the dropped blocks' pages back to the system, not just to the allocator


def device_free_bytes(device: torch.device) -> int | None:
    """A GPU's free memory now; None for the CPU, whose budgets are fixed (the resident-memory
    targets: one block, a chunk of the vocabulary)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def resident_budget(device: torch.device) -> int:
    """``Materializer``'s ``resident_bytes`` for ``device``: ``RESIDENT_BYTES`` on the CPU, a share
    of a GPU's free memory (``DEVICE_BLOCK_SHARE``, never less than the CPU's)."""
    free = device_free_bytes(device)
    return RESIDENT_BYTES if free is None else max(RESIDENT_BYTES, int(DEVICE_BLOCK_SHARE * free))


def vocab_budget(device: torch.device) -> int | None:
    """Bytes of vocabulary matrices to keep on ``device`` (``DeviceCached``); None on the CPU,
    where they are read a chunk at a time to keep resident memory small."""
    free = device_free_bytes(device)
    return None if free is None else int(DEVICE_VOCAB_SHARE * free)


def _loader(m: Materializer, names: list[str]):  # noqa: ANN202  (a forward pre-hook)
    def hook(module: nn.Module, args: object) -> None:
        m._load(names)

    return hook


def _dropper(m: Materializer, names: list[str]):  # noqa: ANN202  (a forward hook)
    def hook(module: nn.Module, args: object, output: object) -> None:
        m._drop(names)

    return hook


def skeleton_of(
    config: object, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> nn.Module:
    """The family's causal LM for ``config``: parameters on the meta device (in ``dtype``, what
    ``Materializer`` converts the stored tensors to), buffers real, on ``device``."""
    # accelerate and transformers: only commands that read a model import them.
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if device is not None and device.type != "cpu":
        for module in model.modules():
            for name, buffer in module._buffers.items():
                if buffer is not None and not buffer.is_meta:
                    module._buffers[name] = buffer.to(device)
    return model.eval().requires_grad_(False)
