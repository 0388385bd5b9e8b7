"""Attention-pattern scores: *where* each head looks, measured from the model's own attention
on generated inputs (``describer.maps.attention`` computes them). This module holds what every
part of headmaps needs without torch: the scores' names and meanings, the settings that
define the inputs, and when a score is notable enough to tell a describer.

The inputs (``PatternSettings``): ``batch`` sequences, each a prefix token (the tokenizer's
BOS, else ``<|endoftext|>``, else EOS, as for residual sources) followed by ``length`` random
readable tokens, all distinct within the sequence, and then the same ``length`` tokens again.
Positions are 0 (the prefix), 1…length (the first half), length+1…2·length (the repeat).
Tokens are drawn uniformly from the readable vocabulary (not special, unused, byte-fallback or
blank) by a ``torch.Generator`` seeded with ``seed``.

- ``previous_token``: mean attention from position i to i−1, over first-half positions
  i = 2…length (position 1's previous token is the prefix, counted by ``first_token``);
- ``induction``: mean attention from a repeat position i to i−length+1, the token after the
  current token's first occurrence, over i = length+1…2·length;
- ``duplicate_token``: mean attention from a repeat position i to i−length, the current
  token's earlier (and only other) occurrence;
- ``first_token``: mean attention to position 0 (the sink), over first-half positions;
- ``entropy``: mean entropy of the attention distribution (nats) over first-half positions;
- ``distance``: mean attention-weighted distance Σ_j a_ij·(i−j), in positions, over first-half
  positions.

The first four are fractions of attention (0…1); a head scoring 1 attends only there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from describer.errors import NotFound


@dataclass(frozen=True)
class Pattern:
    name: str
    label: str
    """How a sentence names a head scoring high: "an induction head"."""
    help: str
    unit: str
    """``fraction`` (0…1), ``nats`` or ``positions``."""
    notable: float | None
    """A score at or above this is worth telling a describer (None: never on its own). Most
    heads of a trained model put a good share of attention on the first token, so only a head
    that rests there almost entirely counts as a sink."""


PATTERNS: dict[str, Pattern] = {
    p.name: p
    for p in (
        Pattern(
            "previous_token",
            "a previous-token head",
            "mean attention from each position to the one before it",
            "fraction",
            0.4,
        ),
        Pattern(
            "induction",
            "an induction head",
            "on a random sequence repeated, mean attention to the token after the current token's "
            "earlier occurrence",
            "fraction",
            0.4,
        ),
        Pattern(
            "duplicate_token",
            "a duplicate-token head",
            "on a random sequence repeated, mean attention to the current token's earlier occurrence",
            "fraction",
            0.4,
        ),
        Pattern(
            "first_token",
            "an attention-sink head",
            "mean attention to the first position (the BOS or sink token)",
            "fraction",
            0.9,
        ),
        Pattern(
            "entropy",
            "a head with diffuse attention",
            "mean entropy of the attention distribution, in nats",
            "nats",
            None,
        ),
        Pattern(
            "distance",
            "a head looking far back",
            "mean attention-weighted distance to the attended positions, in positions",
            "positions",
            None,
        ),
    )
}
FRACTIONS = tuple(name for name, p in PATTERNS.items() if p.unit == "fraction")


def check_pattern(name: str) -> Pattern:
    """The pattern called ``name``, or an error listing the valid names."""
    if name not in PATTERNS:
        raise NotFound(f"unknown pattern {name!r}; valid patterns: {', '.join(PATTERNS)}")
    return PATTERNS[name]


class PatternSettings(BaseModel):
    """What defines the inputs the pattern scores are measured on (see the module)."""

    model_config = ConfigDict(frozen=True)

    length: int = Field(50, ge=3, description="Random tokens per half of each sequence.")
    batch: int = Field(16, ge=1, description="Sequences.")
    seed: int = 0
    chunk: int = Field(16, ge=1, description="Sequences per forward pass (memory, not results).")
    version: int = 1
    """Bumped when a definition changes, so stored scores from the old one are not reused."""

    def key(self) -> str:
        """The store key: a hash of everything that changes a score (not ``chunk``)."""
        data = self.model_dump(exclude={"chunk"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def top_of(table: list[list[float]], n: int = 10, lowest: bool = False) -> list[dict[str, float | int]]:
    """The ``n`` highest (or lowest) cells of a ``[layer][head]`` table, ties by position."""
    sign = 1.0 if lowest else -1.0
    flat = [(v, layer, head) for layer, row in enumerate(table) for head, v in enumerate(row)]
    flat.sort(key=lambda t: (sign * t[0], t[1], t[2]))
    return [{"layer": layer, "head": head, "score": v} for v, layer, head in flat[:n]]


class PatternScores(BaseModel):
    """Every head's pattern scores for one model under one ``PatternSettings``."""

    settings: dict[str, Any]
    """``PatternSettings`` plus how the attention was read (``attention``: the implementation)."""
    scores: dict[str, list[list[float]]]
    """pattern name → ``[layer][head]``."""

    def top_heads(self, pattern: str, n: int = 10) -> list[dict[str, float | int]]:
        return top_of(self.scores[pattern], n)

    def head(self, layer: int, head: int) -> dict[str, float]:
        return {name: table[layer][head] for name, table in self.scores.items()}


SPECIFIC = ("induction", "duplicate_token", "previous_token")
"""Patterns that say more about a head than a sink does: listed before it, whatever the values
(an induction head rests on the first token until there is something to induce from)."""


def notable_patterns(scores: dict[str, float]) -> list[tuple[str, float]]:
    """The head's scores at or above their pattern's ``notable`` threshold: the in-context ones
    (``SPECIFIC``) first, strongest first within each group."""
    hits = [
        (name, value)
        for name, value in scores.items()
        if name in PATTERNS and PATTERNS[name].notable is not None and value >= PATTERNS[name].notable
    ]
    return sorted(hits, key=lambda t: (t[0] not in SPECIFIC, -t[1]))


def pattern_fact(name: str, value: float) -> str:
    """A notable score as the sentence a prompt states: "an induction head (induction 0.87: …)"."""
    p = PATTERNS[name]
    share = f"{value:.2f}" if p.unit != "fraction" else f"{value:.2f}, {round(100 * value)}% of its attention"
    return f"{p.label} ({name} {share}; {p.help})"
