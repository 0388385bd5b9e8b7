"""How MAPS represents source tokens and how much of each head it reports, with the defaults
chosen per model family."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SourceKind = Literal["embed", "mlp0", "embed+mlp0"]


class AnalysisSettings(BaseModel):
    """How source tokens are represented and how much of each head is reported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: SourceKind = "embed+mlp0"
    """Representation of a source token for layers after the first: the token embedding,
    block 0's MLP applied to it (the paper's recipe), or the two summed as block 0 leaves
    the residual stream. Layer 0 always reads the embedding."""
    norms: bool = True
    """Apply the layer's pre-attention norm to the source, and fold the post-attention norm
    and the final norm's scale into the output side."""
    top_tokens: int = Field(15, ge=1)
    """Salient source tokens reported per head (the paper's N)."""
    top_mappings: int = Field(5, ge=1)
    """Mapped tokens reported per salient source (the paper's k)."""
    readable_only: bool = True
    """Restrict salient sources and reported mappings to readable tokens (no special,
    unused, byte-fallback or blank tokens). Operation scores always rank the whole vocabulary."""

    def key(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


FAMILY_DEFAULTS: dict[str, tuple[SourceKind, bool]] = {
    # Measured on the real weights (benchmarks/source_representation.py, docs/analyzer.md):
    # without norms Gemma's sqrt(d)-scaled embeddings and its 1+w norms swamp every head.
    "gemma": ("embed+mlp0", True),
    "gemma2": ("embed+mlp0", True),
    "gemma3": ("embed+mlp0", True),
    "gemma3_text": ("embed+mlp0", True),
    "qwen2": ("embed+mlp0", True),
    "qwen3": ("embed+mlp0", True),
    # No real weights of these families are available offline; they keep the paper's recipe,
    # which the paper validated on GPT-2, Pythia and Llama-3.1 (see shared/paper tables).
    "gpt2": ("mlp0", False),
    "gpt_neox": ("mlp0", False),
    "llama": ("mlp0", False),
    "mistral": ("mlp0", False),
    "phi3": ("mlp0", False),
}


def default_settings(family: str, **overrides: object) -> AnalysisSettings:
    source, norms = FAMILY_DEFAULTS.get(family, ("mlp0", False))
    return AnalysisSettings(**{"source": source, "norms": norms, **overrides})


# --- results ----------------------------------------------------------------------------------
