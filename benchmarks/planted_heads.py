"""Planted heads for a describer benchmark: salient mapping tables whose operation is known.

Each planted head looks like a real attention head's salient table (``describe --mappings``):
``rows`` source tokens, each with ``mappings`` output tokens, strongest first, spelled like a
BPE tokenizer's tokens (most words with a leading space, ``" Paris"``, some without). For an
operation (``OPERATIONS``: copying, country → capital, country → language, past tense, plural,
present participle, comparative, English → French, successor, antonym, male → female,
uppercase, animal → its young), the rows are distinct pairs of that operation's vocabulary
(``benchmarks/planted_vocab.py``, written for this benchmark; a little under half the pairs
also occur in the project's own operation data, the rest do not). In exactly ``round(signal * rows)``
rows, chosen at random, the row's target is among the outputs, at a random rank (rank r with
weight 2^-r, so rank 0 is the most common, as in real heads); the other outputs, and every
output of the remaining rows, are noise: common English subword tokens, punctuation,
fragments, other words of the same vocabulary, sometimes a case or spacing variant of the
source. In a row without the target no output is the target in another case or spacing
either. A ``junk`` head's sources and outputs are drawn from a mixed noise pool (subwords,
punctuation, fragments, code, multilingual fragments) that holds no word of any operation, and
no output is its row's source in another spacing or case, so it implements no relation.
Everything is deterministic for a seed; a head's table depends only on the seed and its name,
not on which other heads are asked for.

The keyword rule (``is_right``). A description (the describer's answer: ``inputs``,
``pattern``, ``unclear``, ``category``, ``tags``) of a head with a real operation is right
when it is not unclear (``unclear`` false and ``category`` not ``"unclear"``) and its
``inputs``, ``pattern``, ``category`` and ``tags``, joined and lower-cased, contain one of
``KEYWORDS[operation]`` as a substring. A description of a ``junk`` head is right when it is
unclear. ``reasoning`` is not read.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.planted_vocab import FRAGMENTS, JUNK, PAIRS, PUNCTUATION, SUBWORDS
from describer.mapping_tables import MAX_MAPPINGS, MAX_ROWS, MappingTable, write_mapping_tables

JUNK_OPERATION = "junk"

KEYWORDS: dict[str, tuple[str, ...]] = {
    "copying": ("copy", "copies", "itself", "same token", "identical", "repeat", "unchanged", "identity"),
    "country_to_capital": ("capital",),
    "country_to_language": ("language", "spoken", "tongue"),
    "past_tense": ("past", "preterite"),
    "plural": ("plural",),
    "present_participle": (
        "-ing",
        "ing form",
        "ing suffix",
        "ing ending",
        "'ing'",
        '"ing"',
        " ing ",
        "present participle",
        "gerund",
        "progressive",
        "continuous",
    ),
    "comparative": ("comparative", "more ", "-er", "bigger", "greater degree", "higher degree"),
    "english_to_french": ("french", "translat"),
    "successor": ("next", "successor", "follow", "increment", "subsequent", "plus one", "+1"),
    "antonym": ("opposite", "antonym"),
    "male_to_female": ("female", "feminine", "gender", "woman", "women"),
    "uppercase": (
        "uppercase",
        "upper case",
        "upper-case",
        "capital letter",
        "capitaliz",
        "capitalis",
        "all caps",
        "all-caps",
    ),
    "animal_to_young": ("young", "baby", "babies", "offspring", "juvenile", "infant"),
}
"""The keywords that name each operation (lower case, matched as substrings)."""

OPERATIONS: tuple[str, ...] = tuple(KEYWORDS)

SPACED = 0.85
"""The fraction of rows whose words carry a leading space."""
_SOURCES = (("vocabulary", 0.36), ("subword", 0.36), ("punctuation", 0.13), ("fragment", 0.1))
"""Where a noise output comes from; the rest of the weight (0.05): a variant of the source."""


@dataclass(frozen=True)
class PlantedHead:
    name: str
    """``"<operation>-<n>"``, e.g. ``"plural-1"``, or ``"junk-<n>"``."""
    operation: str
    """One of ``OPERATIONS``, or ``"junk"`` for a table with no pattern."""
    table: MappingTable
    targets: tuple[str, ...] = ()
    """The planted target of each row, whether or not it is among the row's outputs (the
    source itself for copying); empty for junk."""


def planted_heads(
    seed: int = 0,
    *,
    rows: int = 15,
    mappings: int = 5,
    signal: float = 0.8,
    per_operation: int = 1,
    junk: int = 2,
    operations: Sequence[str] | None = None,
) -> list[PlantedHead]:
    """``per_operation`` heads of each of ``operations`` (default all ``OPERATIONS``, in that
    order), then ``junk`` junk heads."""
    chosen = OPERATIONS if operations is None else tuple(operations)
    unknown = [op for op in chosen if op not in PAIRS]
    if unknown:
        raise ValueError(f"unknown operations {unknown}; known: {', '.join(OPERATIONS)}")
    largest = min([MAX_ROWS, *(len(PAIRS[op]) for op in chosen), *([len(JUNK)] if junk else [])])
    if not 1 <= rows <= largest:
        raise ValueError(f"rows must be between 1 and {largest} for these operations, got {rows}")
    if not 1 <= mappings <= MAX_MAPPINGS:
        raise ValueError(f"mappings must be between 1 and {MAX_MAPPINGS}, got {mappings}")
    if not 0.0 <= signal <= 1.0:
        raise ValueError(f"signal must be between 0 and 1, got {signal}")
    if per_operation < 0 or junk < 0:
        raise ValueError("per_operation and junk must not be negative")
    heads = [
        _operation_head(f"{op}-{n}", op, seed, rows, mappings, signal)
        for op in chosen
        for n in range(1, per_operation + 1)
    ]
    heads += [_junk_head(f"junk-{n}", seed, rows, mappings) for n in range(1, junk + 1)]
    return heads


def is_right(operation: str, description: Mapping[str, object]) -> bool:
    """Whether ``description`` names the planted ``operation`` (the rule in the module's
    docstring)."""
    unclear = _flag(description.get("unclear")) or description.get("category") == "unclear"
    if operation == JUNK_OPERATION:
        return unclear
    if operation not in KEYWORDS:
        raise ValueError(f"unknown operation {operation!r}")
    if unclear:
        return False
    text = _text(description)
    return any(keyword in text for keyword in KEYWORDS[operation])


def write_mappings_file(heads: Iterable[PlantedHead | MappingTable], path: str | Path) -> None:
    """The heads' tables as a ``describe --mappings`` file (the operations are not written)."""
    write_mapping_tables((h.table if isinstance(h, PlantedHead) else h for h in heads), path)


# --- building the tables -------------------------------------------------------------------


def _operation_head(
    name: str, operation: str, seed: int, rows: int, mappings: int, signal: float
) -> PlantedHead:
    rng = random.Random(f"{seed}/{name}")
    pairs = rng.sample(PAIRS[operation], rows)
    hits = set(rng.sample(range(rows), round(signal * rows)))
    vocabulary = sorted({word for pair in PAIRS[operation] for word in pair})
    table_rows, targets = [], []
    for r, (source_word, target_word) in enumerate(pairs):
        space = " " if rng.random() < SPACED else ""
        source, target = space + source_word, space + target_word
        outputs = _noise(rng, source, target, vocabulary, mappings - (r in hits), near_target=r in hits)
        if r in hits:
            outputs.insert(_rank(rng, mappings), target)
        table_rows.append((source, tuple(outputs)))
        targets.append(target)
    return PlantedHead(name, operation, MappingTable(name, tuple(table_rows)), tuple(targets))


def _junk_head(name: str, seed: int, rows: int, mappings: int) -> PlantedHead:
    rng = random.Random(f"{seed}/{name}")
    sources = rng.sample(JUNK, rows)
    table_rows = tuple(
        (s, tuple(rng.sample([t for t in JUNK if _bare(t) != _bare(s)], mappings))) for s in sources
    )
    return PlantedHead(name, JUNK_OPERATION, MappingTable(name, table_rows))


def _rank(rng: random.Random, mappings: int) -> int:
    return rng.choices(range(mappings), weights=[2.0**-r for r in range(mappings)])[0]


def _noise(
    rng: random.Random, source: str, target: str, vocabulary: list[str], n: int, *, near_target: bool
) -> list[str]:
    """``n`` distinct noise outputs for a row: never the target; a case or spacing variant of
    the target only where the target itself is among the outputs (``near_target``); the
    source itself never, a variant of it only as the variant slot."""
    kinds, weights = zip(*_SOURCES, strict=True)
    out: list[str] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 10_000:  # a pool too small for the outputs asked for
            raise ValueError(f"cannot find {n} distinct noise outputs for {source!r}")
        kind = rng.choices([*kinds, "variant"], weights=[*weights, 1 - sum(weights)])[0]
        if kind == "vocabulary":
            token = (" " if rng.random() < SPACED else "") + rng.choice(vocabulary)
        elif kind == "subword":
            token = rng.choice(SUBWORDS)
        elif kind == "punctuation":
            token = rng.choice(PUNCTUATION)
        elif kind == "fragment":
            token = rng.choice(FRAGMENTS)
        else:
            token = _variant(rng, source)
        if token in out or token in (source, target):
            continue
        if kind != "variant" and _bare(token) == _bare(source):
            continue
        if not near_target and _bare(token) == _bare(target):
            continue
        out.append(token)
    return out


def _variant(rng: random.Random, token: str) -> str:
    """The token with its first letter's case swapped, or its leading space dropped or added."""
    word = token.lstrip(" ")
    space = token[: len(token) - len(word)]
    options = [space + word[:1].swapcase() + word[1:], word if space else " " + word]
    return rng.choice([o for o in options if o != token])


def _bare(token: str) -> str:
    return token.strip().lower()


# --- reading a description -----------------------------------------------------------------


def _flag(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return bool(value)


def _text(description: Mapping[str, object]) -> str:
    parts: list[str] = []
    for key in ("inputs", "pattern", "category", "tags"):
        value = description.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, (list, tuple)):
            parts.extend(str(v) for v in value if v is not None)
    return " | ".join(parts).lower()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.planted_heads OUT.json   (the default planted heads)")
    written = planted_heads()
    write_mappings_file(written, sys.argv[1])
    print(f"{len(written)} heads written to {sys.argv[1]}")
