"""The analyze and score jobs: a model and operations in, one result object out."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence

import torch

from describer.errors import HeadmapsError
from describer.maps.analyzer import Analyzer, Progress
from describer.maps.attention import pattern_scores
from describer.maps.loading import LoadedModel, Weights, load_model
from describer.maps.operations import Operation, TokenizedOperation, tokenize
from describer.maps.patterns import PatternScores, PatternSettings, check_pattern
from describer.maps.residual import prefix_token
from describer.maps.results import AnalysisResult, OperationScores
from describer.maps.settings import STORED_SOURCES, AnalysisSettings, SourceChoice

Warn = Callable[[str], None]


def source_notes(analyzer: Analyzer) -> dict[str, str]:
    """What the output says about where its sources came from, beside the settings."""
    if analyzer.residual is None:
        return {}
    s = analyzer.settings
    how = (
        "the exact top by residual amplification over the whole vocabulary"
        if s.salient_candidates == 0
        else f"ranked by residual amplification among each head's {s.salient_candidates} best tokens by "
        f"{s.salient_proxy} proxy amplification"
    )
    return {"residual_prefix": analyzer.residual.prefix_text, "salient_sources": how}


def load_notes(loaded: LoadedModel) -> dict[str, str]:
    """How the weights were read, for the output (not part of the settings key)."""
    notes = {"weights": "streamed block by block" if loaded.weights is not None else "whole model loaded"}
    if loaded.note:
        notes["weights_note"] = loaded.note
    return notes


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise HeadmapsError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HeadmapsError(f"--device {device} was asked for, but torch sees no CUDA device here")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise HeadmapsError(f"--device {device}: torch sees only {torch.cuda.device_count()} CUDA device(s)")
    return device


def settings_for(
    loaded: LoadedModel, choice: SourceChoice | None = None, **overrides: object
) -> AnalysisSettings:
    """The family's default settings with the user's ``choice`` of source applied."""
    return (choice or SourceChoice()).settings(loaded.family, **overrides)


def tokenize_all(
    operations: Sequence[Operation], loaded: LoadedModel, k: int | None, warn: Warn, strict: bool
) -> list[TokenizedOperation]:
    """Tokenize each operation; with ``strict`` an operation without usable pairs is an error,
    otherwise it is skipped with a warning (one unusable operation should not sink ``all``)."""
    vocab = loaded.adapter.vocab_size
    out = []
    for op in operations:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out.append(tokenize(op, loaded.tokenizer, vocab, k))
            except HeadmapsError as exc:
                if strict:
                    raise
                warn(f"skipping: {exc}")
        for w in caught:
            warn(str(w.message))
    if not out:
        raise HeadmapsError("none of the chosen operations has usable pairs for this tokenizer")
    return out


def analyze_model(
    model: str | None,
    operations: Sequence[Operation],
    *,
    top_tokens: int = STORED_SOURCES,
    top_mappings: int = 5,
    choice: SourceChoice | None = None,
    device: str = "auto",
    k: int | None = None,
    progress: Progress | None = None,
    warn: Warn = print,
    loaded: LoadedModel | None = None,
    with_salient: bool = True,
    patterns: PatternSettings | None = None,
    weights: Weights = "stream",
    dtype: str = "float32",
) -> AnalysisResult:
    """``with_salient=False`` scores the operations only (their salient mappings are stored);
    with neither salient mappings nor operations asked for, MAPS is skipped. ``patterns``:
    measure the attention-pattern scores on these inputs too."""
    device = pick_device(device)
    loaded = loaded or load_model(model, device=device, weights=weights, dtype=dtype)
    settings = settings_for(loaded, choice, top_tokens=top_tokens, top_mappings=top_mappings, dtype=dtype)
    heads, scores, notes, tokenized = [], [], {}, []
    if patterns is not None:  # an unusable prefix is an error now, not after the analysis
        prefix_token(loaded.tokenizer, loaded.adapter.vocab_size)
    if with_salient or operations:
        tokenized = tokenize_all(operations, loaded, k, warn, strict=len(operations) == 1)
        with Analyzer(loaded.adapter, loaded.tokenizer, settings, device=device) as analyzer:
            heads, scores = analyzer.analyze(tokenized, with_salient=with_salient, progress=progress)
            notes = source_notes(analyzer)
    measured = None
    if patterns is not None:
        measured = pattern_scores(
            loaded.adapter, loaded.tokenizer, patterns, device=device, progress=progress
        )
    return AnalysisResult(
        model=loaded.name,
        settings={
            **settings.model_dump(),
            **notes,
            **load_notes(loaded),
            "family": loaded.family,
            "device": device,
        },
        heads=heads,
        operations={s.name: s for s in scores},
        skipped_operations=[
            op.name for op in operations if op.name not in {t.operation.name for t in tokenized}
        ],
        patterns=measured,
    )


def score_operation(
    model: str | None,
    operation: Operation,
    *,
    k: int | None = None,
    choice: SourceChoice | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    warn: Warn = print,
    loaded: LoadedModel | None = None,
    weights: Weights = "stream",
    dtype: str = "float32",
) -> tuple[str, OperationScores]:
    device = pick_device(device)
    loaded = loaded or load_model(model, device=device, weights=weights, dtype=dtype)
    settings = settings_for(loaded, choice, dtype=dtype)
    (op,) = tokenize_all([operation], loaded, k, warn, strict=True)
    with Analyzer(loaded.adapter, loaded.tokenizer, settings, device=device) as analyzer:
        _, (scores,) = analyzer.analyze([op], with_salient=False, progress=progress)
    return loaded.name, scores


def score_pattern(
    model: str | None,
    pattern: str,
    *,
    settings: PatternSettings | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    loaded: LoadedModel | None = None,
    weights: Weights = "stream",
    dtype: str = "float32",
) -> tuple[str, PatternScores]:
    """Every head's attention-pattern scores (all patterns: one pass measures them together)."""
    check_pattern(pattern)
    device = pick_device(device)
    loaded = loaded or load_model(model, device=device, weights=weights, dtype=dtype)
    return loaded.name, pattern_scores(
        loaded.adapter, loaded.tokenizer, settings or PatternSettings(), device=device, progress=progress
    )
