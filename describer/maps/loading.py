"""Resolve a MODEL argument, load it once, and cache the slow GGUF conversion.

A MODEL is an alias (``headmaps models`` lists them), a local ``.gguf`` file, a local
directory holding a transformers checkpoint, or a Hugging Face hub id. GGUF files are
dequantised by transformers, which takes about a minute for a small model; the result is
saved as safetensors under the cache directory, keyed by the GGUF's sha256, so the next
load takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from describer.errors import HeadmapsError, NotFound
from describer.maps.aliases import (  # noqa: F401  (re-exported: callers know them from here)
    ALIASES,
    COMPLETE,
    Alias,
    cache_dir,
    converted_dir,
    materialise_alias,
    sha256_file,
)
from describer.maps.memory import bound_heap

DEFAULT_MODEL = "gemma-3-270m"
GGUF_MAGIC = b"GGUF"


# --- specs -----------------------------------------------------------------------------------

SourceKind = Literal["alias", "gguf", "dir", "hub"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """A resolved MODEL argument."""

    name: str
    """The name the store and the output know the model by."""
    kind: SourceKind
    source: str
    """Hub id, directory, or GGUF path."""
    alias: Alias | None = None


def resolve(spec: str | None) -> ModelSpec:
    """Turn a MODEL argument into a ``ModelSpec`` without loading anything."""
    spec = spec or DEFAULT_MODEL
    if spec in ALIASES:
        return ModelSpec(spec, "alias", spec, ALIASES[spec])
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise HeadmapsError(f"{spec}: not a .gguf file (pass a GGUF file, a model directory or an alias)")
        return ModelSpec(path.stem, "gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise HeadmapsError(f"{spec}: directory has no config.json, so it is not a transformers model")
        return ModelSpec(path.resolve().name, "dir", str(path.resolve()))
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return ModelSpec(spec, "hub", spec)
    raise NotFound(
        f"unknown model {spec!r}: not an alias ({', '.join(ALIASES)}), an existing path, or a hub id like org/name"
    )


# --- loading -----------------------------------------------------------------------------------


Weights = Literal["stream", "full"]
"""How a model is loaded: ``stream`` reads the weights from the files block by block as the
analysis uses them (a skeleton model with no weights in memory); ``full`` loads the whole model
with ``transformers`` (what the evaluation experiments, which run the model freely, need)."""
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class LoadedModel:
    """A model ready for analysis, with what identifies it."""

    spec: ModelSpec
    model: object
    """The loaded model, or (streamed) its skeleton: parameters on the meta device."""
    tokenizer: object
    content_hash: str | None
    """sha256 of the GGUF, the hub revision, or a fingerprint of a local directory."""
    tensors: object | None = None
    """Streamed: the ``TensorSource`` the weights are read from."""
    weights: object | None = None
    """Streamed: the ``Materializer`` that loads the skeleton's blocks."""
    note: str | None = None
    """What was done to fit the model (stored dtype, offloading), for the output."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def family(self) -> str:
        return str(self.model.config.model_type)

    @cached_property
    def adapter(self):  # noqa: ANN201  (Adapter; imported lazily to keep startup light)
        # torch: resolving names and aliases (``headmaps models``, ``show``) must not import it.
        from describer.maps.adapters import adapter_for

        return adapter_for(self.model, self.tensors, self.weights)


def _check_gguf(path: Path) -> None:
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise HeadmapsError(f"{path}: not a GGUF file (bad magic bytes)")


def _load_pretrained(source: str, device: str, **kwargs: object) -> tuple[object, object, str | None]:
    """The whole model: float32 on ``device`` when that fits in memory (the numbers every test
    checks), else in its stored dtype spread by ``accelerate`` over the device, the CPU and the
    disk; the third value says which when it is not the first."""
    # torch and transformers take seconds to import: only the commands that load a model pay.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    size = _float32_bytes(Path(source)) if Path(source).is_dir() else None
    if size is not None and size > 0.6 * _memory_bytes():
        offload = cache_dir() / "offload" / hashlib.sha256(source.encode()).hexdigest()[:16]
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype="auto", device_map="auto", offload_folder=str(offload), **kwargs
        )
        note = (
            f"loaded in its stored dtype ({model.dtype}) with accelerate's device_map='auto' (layers that "
            f"do not fit offloaded to {offload}): float32 would need {size / 2**30:.1f} GB"
        )
        return model.eval().requires_grad_(False), tokenizer, note
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    model.eval().requires_grad_(False)
    return model.to(device), tokenizer, None


def _memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _float32_bytes(directory: Path) -> int | None:
    """The checkpoint's size in float32, from its safetensors files and stored dtype."""
    files = list(directory.glob("*.safetensors"))
    if not files:
        return None
    stored = sum(f.stat().st_size for f in files)
    config = directory / "config.json"
    text = config.read_text() if config.exists() else ""
    per = 2 if ("bfloat16" in text or "float16" in text) else 4
    return stored * 4 // per


def _convert_gguf(path: Path, digest: str) -> Path:
    """Dequantise a GGUF once, a tensor at a time, into float32 safetensors shards with its
    config and tokenizer; return their directory. float32 because the dequantised values
    (block scale × quant, for K-quants) are not exact in bfloat16 or float16."""
    out = converted_dir(digest)
    if (out / COMPLETE).exists():
        return out
    # torch, transformers and gguf: only the commands that load a model import them.
    from transformers import AutoTokenizer

    from describer.maps.adapters import UnsupportedArchitecture, adapter_for
    from describer.maps.shards import write_shards
    from describer.maps.streaming import skeleton_of
    from describer.maps.tensors import GGUFFile

    try:
        source = GGUFFile(path)
    except HeadmapsError as exc:
        raise HeadmapsError(f"could not read this GGUF: {exc}") from exc
    except (MemoryError, OverflowError, ValueError) as exc:  # counts in a corrupt header
        raise HeadmapsError(f"{path}: could not read this GGUF ({type(exc).__name__})") from exc
    try:
        skeleton = skeleton_of(source.config)
        adapter_for(skeleton)  # refuse unsupported families before writing
        source.config.architectures = [type(skeleton).__name__]
    except UnsupportedArchitecture as exc:
        raise HeadmapsError(str(exc)) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # transformers raises many types for a corrupt or odd file
        raise HeadmapsError(
            f"{path}: could not read this GGUF's tokenizer ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=out.parent))
    try:
        write_shards(source, staging)
        source.config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / COMPLETE).write_text(f"{path.name}\n{digest}\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        source.close()
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _dir_fingerprint(path: Path) -> str:
    """Cheap identity of a local checkpoint: names, sizes and edges of its weight files."""
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if file.suffix in {".safetensors", ".bin", ".json"} and file.is_file():
            digest.update(f"{file.name}:{file.stat().st_size}".encode())
            with file.open("rb") as handle:
                digest.update(handle.read(1 << 20))
    return digest.hexdigest()


BOUND_HEAP_PARAMETERS = 1_000_000_000
"""From this many parameters up, glibc's mmap threshold is fixed (``memory.bound_heap``). A big
model's layers free buffers of tens of MB that the floating threshold would keep on a resident
heap (a 28-layer 7B shape: 4.66 GB peak without, 2.34 GB with); on a small one every large
buffer then costs fresh page faults (gemma-3-270m: 226 s with, 166 s without, at 1.06 and
1.26 GiB peak) for memory it does not need."""


def load_model(
    spec: str | ModelSpec | None,
    device: str = "cpu",
    *,
    weights: Weights = "full",
    dtype: str = "float32",
) -> LoadedModel:
    """Load a model for analysis on ``device``: whole (float32 where it fits), or streamed
    (``weights="stream"``: nothing but the config, tokenizer and small tensors in memory; blocks
    read in ``dtype`` when used)."""
    if weights not in ("stream", "full"):
        raise HeadmapsError(f"unknown --weights {weights!r}; use stream or full")
    check_dtype(dtype)
    if weights == "full" and dtype != "float32":
        raise HeadmapsError(f"--dtype {dtype} needs --weights stream (a whole model is loaded in float32)")
    resolved = spec if isinstance(spec, ModelSpec) else resolve(spec)
    if resolved.kind in ("alias", "gguf"):
        if resolved.alias is not None:
            digest = resolved.alias.sha256
            if not (converted_dir(digest) / COMPLETE).exists():
                _convert_gguf(materialise_alias(resolved.alias), digest)
        else:
            path = Path(resolved.source)
            _check_gguf(path)
            digest = sha256_file(path)
            _convert_gguf(path, digest)
        directory = converted_dir(digest)
        if weights == "stream":
            return _checked(_streamed(resolved, directory, digest, device, dtype))
        model, tokenizer, note = _load_pretrained(str(directory), device)
        return _checked(LoadedModel(resolved, model, tokenizer, digest, note=note))
    if weights == "stream":
        if resolved.kind == "hub":
            # huggingface_hub: only a hub id needs it.
            from describer.maps.tensors.hub import hub_snapshot

            directory = hub_snapshot(resolved.source)
            return _checked(_streamed(resolved, directory, directory.name, device, dtype))
        directory = Path(resolved.source)
        if any(directory.glob("*.safetensors")):
            return _checked(_streamed(resolved, directory, _dir_fingerprint(directory), device, dtype))
    try:
        model, tokenizer, note = _load_pretrained(resolved.source, device)
    except Exception as exc:
        where = "the Hugging Face hub" if resolved.kind == "hub" else resolved.source
        raise HeadmapsError(
            f"could not load {resolved.source!r} from {where} ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    if resolved.kind == "hub":
        digest = getattr(model.config, "_commit_hash", None)
    else:
        digest = _dir_fingerprint(Path(resolved.source))
        if weights == "stream":
            note = "no safetensors weights here, so the whole model was loaded (.bin checkpoints cannot be streamed)"
    return _checked(LoadedModel(resolved, model, tokenizer, digest, note=note))


def _streamed(spec: ModelSpec, directory: Path, digest: str | None, device: str, dtype: str) -> LoadedModel:
    """A skeleton of the model whose weights stay in ``directory``'s safetensors files."""
    # torch and transformers, as in ``_load_pretrained``.
    import torch
    from transformers import AutoTokenizer

    from describer.maps.adapters import UnsupportedArchitecture, adapter_for, check_family
    from describer.maps.streaming import Materializer, resident_budget, skeleton_of, vocab_budget
    from describer.maps.tensors import DeviceCached, SafetensorsFiles

    compute = compute_dtype(dtype, device)
    tensors = SafetensorsFiles(directory)
    try:
        check_family(tensors.config)
    except UnsupportedArchitecture as exc:
        tensors.close()
        raise HeadmapsError(f"could not load {spec.source!r}: {exc}") from exc
    try:
        skeleton = skeleton_of(tensors.config, compute, torch.device(device))
    except Exception as exc:  # transformers raises ValueError, KeyError… for configs it cannot build
        tensors.close()
        raise HeadmapsError(
            f"could not load {spec.source!r} ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    try:
        plain = adapter_for(skeleton)
    except UnsupportedArchitecture as exc:
        tensors.close()
        raise HeadmapsError(str(exc)) from exc
    vocab = [
        plain._qualname(plain.embedding_module()) + ".weight",
        plain._qualname(plain.unembedding_module()) + ".weight",
    ]
    target = torch.device(device)
    keep = vocab_budget(target)
    if keep is not None:  # a GPU: the vocabulary matrices cross from the host once, not every layer
        tensors = DeviceCached(tensors, target, keep)
    weights = Materializer(
        skeleton,
        tensors,
        blocks=[plain.block_prefix(i) for i in range(plain.n_layers)],
        vocab_names=vocab,
        device=target,
        resident_bytes=resident_budget(target),
    )
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    return LoadedModel(spec, skeleton, tokenizer, digest, tensors=tensors, weights=weights)


def check_dtype(name: str) -> None:
    if name not in DTYPES:
        raise HeadmapsError(f"unknown --dtype {name!r}; use one of: {', '.join(DTYPES)}")


def compute_dtype(name: str, device: str):  # noqa: ANN201  (torch.dtype; torch imported lazily)
    """The torch dtype called ``name``, checked to compute on ``device``."""
    # torch, as in ``_load_pretrained``.
    import torch

    check_dtype(name)
    dtype = getattr(torch, name)
    try:
        probe = torch.ones(4, 4, dtype=dtype, device=device)
        (probe @ probe).sum().item()
    except (RuntimeError, TypeError) as exc:
        raise HeadmapsError(
            f"--dtype {name} cannot be computed on {device} here ({_first_line(exc)})"
        ) from exc
    return dtype


def _checked(loaded: LoadedModel) -> LoadedModel:
    # torch, as in ``LoadedModel.adapter``.
    from describer.maps.adapters import UnsupportedArchitecture

    try:
        loaded.adapter  # noqa: B018  (resolve the adapter now so bad families fail early)
    except UnsupportedArchitecture as exc:
        raise HeadmapsError(str(exc)) from exc
    if sum(p.numel() for p in loaded.model.parameters()) >= BOUND_HEAP_PARAMETERS:
        bound_heap()  # a big model's tensors come and go from here on: freed memory must go back
    return loaded
