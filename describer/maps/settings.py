"""How MAPS represents source tokens and how much of each head it reports, with the defaults
chosen per model family."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from describer.errors import HeadmapsError

SourceKind = Literal["embed", "mlp0", "embed+mlp0", "residual"]
SOURCE_CHOICES = ("embed", "mlp0", "embed+mlp0", "residual", "paper")
"""What ``--source`` takes: a representation, or ``paper``, the MAPS code's exact recipe."""
PRESETS: dict[str, dict[str, object]] = {
    # The MAPS code: layers > 0 read block 0's MLP applied to block 0's pre-MLP norm of the
    # embedding (norm weights kept), layer 0 the embedding; W_V·W_O·W_U with no other norm.
    "paper": {"source": "mlp0", "mlp_norm": True, "attn_norm": False, "fold_norms": False},
}
NORM_PARTS = ("mlp_norm", "attn_norm", "fold_norms")
SHOWN_SOURCES = 15
"""Salient sources a description prompt shows per head, strongest first: the paper's N (MAPS
shows the 15 most amplified source tokens). ``describer.evidence`` cuts the stored rows to it."""
STORED_SOURCES = SHOWN_SOURCES + 5
"""Salient sources analysis stores per head by default: the prompt shows the first
``SHOWN_SOURCES``, so the last 5 stay unseen by the describer and the simulation scorer
(``evaluation.scoring``) can test a description on sources it was not written from."""


class AnalysisSettings(BaseModel):
    """How source tokens are represented and how much of each head is reported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: SourceKind = "embed+mlp0"
    """Representation of a source token: the token embedding, block 0's MLP applied to it
    (``mlp0``), the two summed as block 0 leaves the residual stream (``embed+mlp0``) — layer 0
    reads the embedding for these three — or the residual stream entering each layer at the
    token's position when the model reads just ``[prefix, token]`` (``residual``, one forward
    pass per token; ``describer.maps.residual``)."""
    mlp_norm: bool = True
    """Apply block 0's pre-MLP norm before its MLP when building ``mlp0`` sources."""
    attn_norm: bool = True
    """Apply the layer's pre-attention norm to the source before its value projection."""
    fold_norms: bool = True
    """The norms on a block's output: fold the post-attention norm (Gemma 2/3) into W_O and the
    final norm's scale (and LayerNorm's centring) into the unembedding, and apply block 0's
    post-MLP norm (Gemma 2/3) to ``mlp0`` sources."""
    top_tokens: int = Field(STORED_SOURCES, ge=1)
    """Salient source tokens stored per head, most amplified first. Prompts show the first
    ``SHOWN_SOURCES`` (the paper's N, 15); the rest are held out for simulation scoring."""
    top_mappings: int = Field(5, ge=1)
    """Mapped tokens reported per salient source (the paper's k)."""
    readable_only: bool = True
    """Restrict salient sources and reported mappings to readable tokens (no special,
    unused, byte-fallback or blank tokens). Operation scores always rank the whole vocabulary."""
    salient_proxy: Literal["embed+mlp0", "linear"] = "embed+mlp0"
    """With ``residual``: what picks the salient candidates — the weights-only ``embed+mlp0``
    representation, or a per-layer least-squares map from the embedding to the residual, fitted
    on a sample of tokens run through the model (slower; not yet measured on a real model)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The compute dtype of the weights (``--dtype``); float32 everywhere else."""
    salient_candidates: int = Field(64, ge=0)
    """With ``residual``: salient sources are chosen among each head's top candidates by the
    cheap ``embed+mlp0`` amplification (running every vocabulary token through the model is
    tens of minutes on a CPU), then ranked by their exact residual amplification. 0: run the
    whole vocabulary through the model in chunks instead (exact; for a GPU)."""

    def key(self) -> str:
        # float32 is left out so analyses stored before ``dtype`` existed keep their key.
        exclude = {"dtype"} if self.dtype == "float32" else None
        return hashlib.sha256(self.model_dump_json(exclude=exclude).encode()).hexdigest()[:16]


FAMILY_DEFAULTS: dict[str, dict[str, object]] = {
    # Measured on the real weights (docs/analyzer.md, `headmaps evaluate correlation --source`):
    # the context-free residual agrees with what the heads do far better than any weights-only
    # source on gemma-3-270m and qwen2.5-coder-0.5b.
    "gemma": {"source": "residual"},
    "gemma2": {"source": "residual"},
    "gemma3": {"source": "residual"},
    "gemma3_text": {"source": "residual"},
    "qwen2": {"source": "residual"},
    "qwen3": {"source": "residual"},
    # No real weights of these families are available offline; they keep the paper's exact
    # recipe, which the paper validated on GPT-2, Pythia and Llama-3.1 (see shared/paper tables).
    "gpt2": PRESETS["paper"],
    "gpt_neox": PRESETS["paper"],
    "llama": PRESETS["paper"],
    "mistral": PRESETS["paper"],
    "phi3": PRESETS["paper"],
}


def default_settings(family: str, **overrides: object) -> AnalysisSettings:
    return AnalysisSettings(**{**FAMILY_DEFAULTS.get(family, PRESETS["paper"]), **overrides})


class SourceChoice(BaseModel):
    """What the user chose of the source representation; None leaves the family's default."""

    model_config = ConfigDict(frozen=True)

    source: str | None = None
    """A representation or a preset (``SOURCE_CHOICES``)."""
    norms: bool | None = None
    """All three norm parts at once."""
    mlp_norm: bool | None = None
    attn_norm: bool | None = None
    fold_norms: bool | None = None
    salient_candidates: int | None = Field(None, ge=0)
    """With ``residual``: candidates per head for the salient search (0: the whole vocabulary)."""

    @classmethod
    def checked(cls, source: str | None = None, **norms: bool | None) -> SourceChoice:
        """The choice, refused at once (before any model is loaded) when ``source`` is unknown."""
        if source is not None and source not in SOURCE_CHOICES:
            raise HeadmapsError(f"unknown --source {source!r}; use one of: {', '.join(SOURCE_CHOICES)}")
        return cls(source=source, **norms)

    def settings(self, family: str, **overrides: object) -> AnalysisSettings:
        """The family's defaults, then the preset or representation, then ``norms``, then each
        norm part given explicitly."""
        update: dict[str, object] = {}
        if self.source is not None:
            self.checked(self.source)
            update.update(PRESETS.get(self.source, {"source": self.source}))
        if self.norms is not None:
            update.update(dict.fromkeys(NORM_PARTS, self.norms))
        update.update({part: getattr(self, part) for part in NORM_PARTS if getattr(self, part) is not None})
        if self.salient_candidates is not None:
            update["salient_candidates"] = self.salient_candidates
        base = default_settings(family, **overrides)
        return AnalysisSettings(**{**base.model_dump(), **update})


def describe_norms(settings: dict[str, object]) -> str:
    """The norm parts of stored settings in words, e.g. ``mlp norm`` or ``all norms``."""
    on = [part.replace("_", " ") for part in NORM_PARTS if settings.get(part)]
    if len(on) == len(NORM_PARTS):
        return "all norms"
    return ", ".join(on) if on else "no norms"
