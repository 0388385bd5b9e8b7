"""Relation evidence: which known relations the rows of a head's salient table satisfy.

A salient table's rows are a source token and the tokens the head maps it to, strongest
first. ``relation_facts`` checks every row against a fixed set of relations (copying, suffix
morphology, the operations' pairs, sequence successors, a constant output, the script of the
inputs and of the outputs) and reports each relation that enough rows satisfy, as a fraction of
the rows: "13 of 15 rows: country → capital". A row satisfies a relation when any of its first
``top`` outputs does. The rules are listed in ``docs/analyzer.md`` ("Relation evidence").

Tokens come as tokenizers write them: leading and trailing whitespace and the SentencePiece
``▁`` / GPT-2 ``Ġ`` space markers are ignored, and words are compared case-insensitively.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from describer.maps.lexicon import (
    CASE_LABELS,
    GENDER_LABELS,
    INFLECTION_LABELS,
    case_keys,
    gender_keys,
    inflection_keys,
    opposite_keys,
)
from describer.maps.operations import builtin_operations
from describer.maps.wordforms import (
    SUFFIXES,
    follows,
    normalise,
    shares_stem,
    suffix_keys,
    token_class,
    word_key,
)

__all__ = ["RelationFact", "is_relation_key", "normalise", "operation_label", "relation_facts", "token_class"]

Pairs = tuple[tuple[str, str], ...]
FIXED = ("copy", "stem", "successor", "predecessor", "constant", "opposite")
"""Relation keys without a parameter."""
PRIORITY = {
    "operation": 0,
    "reverse": 0,
    "inflection": 0,
    "gender": 0,
    "opposite": 0,
    "case": 1,
    "copy": 1,
    "suffix": 2,
    "successor": 3,
    "predecessor": 3,
    "constant": 4,
    "stem": 5,
}
"""Order of facts with equal fractions: specific relations first; script facts (context) last."""
CONTEXT_PRIORITY = {"inputs": 8, "outputs": 9}


@dataclass(frozen=True)
class RelationFact:
    """A relation that ``rows`` of a salient table's ``n_rows`` rows satisfy."""

    relation: str
    """Stable key: ``copy``, ``suffix:+ed``, ``operation:country_to_capital``, ``script:outputs:cjk``, …"""
    label: str
    """The relation in plain English: "country → capital", "adds -ed"."""
    rows: int
    n_rows: int
    examples: tuple[tuple[str, str], ...] = ()
    """Up to three (source, matching output) pairs, the tokens as given."""

    @property
    def fraction(self) -> float:
        return self.rows / self.n_rows if self.n_rows else 0.0

    def text(self) -> str:
        """``13 of 15 rows: country → capital``."""
        return f"{self.rows} of {self.n_rows} rows: {self.label}"


def _class_label(side: str, cls: str, majority: bool) -> str:
    """The label of a script fact: inputs are mostly Latin-script words; or, covering half of the
    rows or less, inputs are of mixed scripts, most often non-Latin (Arabic)."""
    if cls == "latin":
        what = "Latin-script words"
    elif cls == "digits":
        what = "numbers (digits)"
    elif cls == "symbols":
        what = "punctuation/symbols"
    elif cls == "whitespace":
        what = "whitespace"
    elif cls == "cjk":
        what = "CJK"  # plainly not Latin
    else:
        what = f"non-Latin ({cls.replace('_', ' ').title()})"
    return f"{side} are mostly {what}" if majority else f"{side} are of mixed scripts, most often {what}"


# --- operations -------------------------------------------------------------------------------

_ABBREVIATIONS = {"adj": "adjective", "adv": "adverb"}
_LANGUAGES = frozenset(
    str.split(
        "english french spanish german italian portuguese dutch russian chinese japanese korean arabic hindi "
        "hebrew greek turkish polish swedish latin"
    )
)
_DOMAINS = frozenset(
    str.split(
        "adjective adverb noun verb word object country city name entity year number person product "
        "company letter token"
    )
)


def operation_label(name: str) -> str:
    """An operation's name made readable: ``country_to_capital`` → "country → capital",
    ``product_by_company`` → "product → company", ``adj_antonym`` → "adjective → antonym",
    ``english_to_french`` → "English → French", ``general_copying`` → "general copying"."""
    words = [_ABBREVIATIONS.get(w.lower(), w) for w in re.split(r"[_\-.\s]+", name) if w]
    if not words:
        return name
    lower = [w.lower() for w in words]
    shown = [w.capitalize() if w.lower() in _LANGUAGES else w for w in words]
    for joint in ("to", "by"):
        if joint in lower[1:-1]:
            i = lower.index(joint, 1)
            return f"{' '.join(shown[:i])} → {' '.join(shown[i + 1 :])}"
    if len(words) >= 2 and lower[0] in _DOMAINS and lower[-1] != "copying":
        return f"{shown[0]} → {' '.join(shown[1:])}"
    return " ".join(shown)


@lru_cache(maxsize=16)
def _operation_index(
    operations: tuple[tuple[str, Pairs], ...],
) -> dict[str, list[tuple[str, frozenset[str]]]]:
    """source word -> [(operation name, its target words)], over every operation's pairs."""
    targets: dict[str, dict[str, set[str]]] = {}
    for name, pairs in operations:
        # A symmetric relation holds both ways (hot → cold is an antonym pair when the data
        # has cold → hot); any other read backwards is its own relation, reverse:NAME.
        backwards = name if symmetric(name) else f"{REVERSE}{name}"
        for source, target in pairs:
            s, t = word_key(source), word_key(target)
            if s and t:
                targets.setdefault(s, {}).setdefault(name, set()).add(t)
                if s != t:  # a copying pair read backwards is itself, not a reverse relation
                    targets.setdefault(t, {}).setdefault(backwards, set()).add(s)
    return {s: [(n, frozenset(ts)) for n, ts in by_op.items()] for s, by_op in targets.items()}


REVERSE = "reverse:"
_SYMMETRIC = ("antonym", "synonym", "homophone", "opposite")


def symmetric(name: str) -> bool:
    """An operation whose pairs hold both ways, told by its name (``adj_antonym``)."""
    return any(word in name.lower() for word in _SYMMETRIC)


def reverse_label(name: str) -> str:
    """``country_to_capital`` read backwards: "capital → country"."""
    label = operation_label(name)
    left, arrow, right = label.partition(" → ")
    return f"{right} → {left}" if arrow else f"{label}, reversed"


def _frozen(
    operations: Iterable[tuple[str, Sequence[tuple[str, str]]]] | None,
) -> tuple[tuple[str, Pairs], ...]:
    """``operations`` as a hashable key of the index cache; tuples of tuples are kept as they
    are, so the same operations passed for every head cost a hash, not a copy."""
    if operations is None:
        return _builtin_frozen()
    merged: dict[str, Pairs] = {}  # a name given twice: its pairs together
    for name, pairs in operations:
        frozen = pairs if isinstance(pairs, tuple) and all(type(p) is tuple for p in pairs[:1]) else ()
        if not frozen:
            frozen = tuple((str(p[0]), str(p[1])) for p in pairs)
        merged[name] = merged.get(name, ()) + frozen
    return tuple(merged.items())


@lru_cache(maxsize=1)
def _builtin_frozen() -> tuple[tuple[str, Pairs], ...]:
    return tuple((op.name, op.pairs) for op in builtin_operations().values())


# --- the facts ----------------------------------------------------------------------------------


def _label(relation: str) -> str:
    kind, _, rest = relation.partition(":")
    if kind == "suffix":
        return f"{'adds' if rest[0] == '+' else 'removes'} -{rest[1:]}"
    if kind == "operation":
        return operation_label(rest)
    if kind == "reverse":
        return reverse_label(rest)
    if kind in ("inflection", "case", "gender"):
        return {"inflection": INFLECTION_LABELS, "case": CASE_LABELS, "gender": GENDER_LABELS}[kind][rest]
    return {
        "copy": "maps to itself (or a case/space variant)",
        "opposite": "the word of opposite meaning (antonym)",
        "stem": "shares the source's stem (a related word form, not the same word)",
        "successor": "the next number or item in a sequence (n → n+1, Monday → Tuesday, a → b)",
        "predecessor": "the previous number or item in a sequence (n → n−1, Tuesday → Monday, b → a)",
    }[relation]


def _priority(relation: str) -> int:
    kind, _, rest = relation.partition(":")
    if kind == "script":
        return CONTEXT_PRIORITY[rest.partition(":")[0]]
    return PRIORITY[kind]


def _row_relations(
    source: str, outputs: Sequence[str], index: dict[str, list[tuple[str, frozenset[str]]]]
) -> dict[str, str]:
    """relation -> the first of ``outputs`` satisfying it, for one row."""
    found: dict[str, str] = {}
    s = word_key(source)
    ops = index.get(s, ())
    for output in outputs:
        o = word_key(output)
        if not s or not o:
            continue
        matched = [
            name if name.startswith(REVERSE) else f"operation:{name}" for name, targets in ops if o in targets
        ]
        if o == s:
            matched.append("copy")
            matched += case_keys(normalise(source), normalise(output))
        elif shares_stem(s, o):
            matched.append("stem")
        matched += suffix_keys(s, o)
        matched += inflection_keys(s, o)
        matched += gender_keys(s, o)
        matched += opposite_keys(s, o)
        if follows(s, o):
            matched.append("successor")
        if follows(o, s):
            matched.append("predecessor")
        for relation in matched:
            found.setdefault(relation, output)
    return found


def _majority_class(outputs: Sequence[str]) -> tuple[str, str] | None:
    """(the class most of ``outputs`` are in, ties to the earliest; its first output)."""
    if not outputs:
        return None
    classes = [token_class(o) for o in outputs]
    counts = Counter(classes)
    best = max(counts.values())
    cls = next(c for c in classes if counts[c] == best)
    return cls, outputs[classes.index(cls)]


def relation_facts(
    rows: Sequence[tuple[str, Sequence[str]]],
    operations: Iterable[tuple[str, Sequence[tuple[str, str]]]] | None = None,
    *,
    top: int = 5,
    min_rows: int = 2,
    min_fraction: float = 0.2,
) -> list[RelationFact]:
    """The relations the rows of a salient table satisfy, strongest first.

    ``rows`` are (source token, its mapped tokens strongest first); a row satisfies a relation
    when any of its first ``top`` outputs does. ``operations`` are (name, pairs), the built-in
    operations when None. Facts satisfied by at least ``min_rows`` rows and ``min_fraction``
    of them, by fraction, then specific relations before general ones, then script facts."""
    n_rows = len(rows)
    if n_rows == 0:
        return []
    index = _operation_index(_frozen(operations))
    hits: dict[str, list[tuple[str, str]]] = {}
    constant: Counter[str] = Counter()
    constant_hits: dict[str, list[tuple[str, str]]] = {}
    inputs: dict[str, list[tuple[str, str]]] = {}
    outputs: dict[str, list[tuple[str, str]]] = {}
    for source, mapped in rows:
        top_outputs = list(mapped[: max(top, 0)])
        for relation, output in _row_relations(source, top_outputs, index).items():
            hits.setdefault(relation, []).append((source, output))
        # A whitespace-only token counts as itself: writing a newline everywhere is a constant too.
        firsts: dict[str, str] = {}
        for output in top_outputs:
            firsts.setdefault(word_key(output) or output, output)
        for k, output in firsts.items():
            constant[k] += 1
            constant_hits.setdefault(k, []).append((source, output))
        first = top_outputs[0] if top_outputs else ""
        inputs.setdefault(token_class(source), []).append((source, first))
        majority = _majority_class(top_outputs)
        if majority is not None:
            outputs.setdefault(majority[0], []).append((source, majority[1]))

    facts = [
        RelationFact(relation, _label(relation), len(pairs), n_rows, tuple(pairs[:3]))
        for relation, pairs in hits.items()
    ]
    if constant:
        token, count = max(constant.items(), key=lambda kv: kv[1])  # ties: the first seen
        if 2 * count >= n_rows:
            examples = tuple(constant_hits[token][:3])
            label = f"the same output {examples[0][1]!r} for most inputs"
            facts.append(RelationFact("constant", label, count, n_rows, examples))
    for side, classes in (("inputs", inputs), ("outputs", outputs)):
        if classes:
            cls, pairs = max(classes.items(), key=lambda kv: len(kv[1]))  # ties: the first seen
            facts.append(
                RelationFact(
                    f"script:{side}:{cls}",
                    _class_label(side, cls, 2 * len(pairs) > n_rows),
                    len(pairs),
                    n_rows,
                    tuple(pairs[:3]),
                )
            )
    kept = [f for f in facts if f.rows >= min_rows and f.fraction >= min_fraction]
    return sorted(kept, key=lambda f: (-f.fraction, _priority(f.relation), f.relation))


# --- keys -----------------------------------------------------------------------------------------

_SCRIPT_KEY = re.compile(r"^script:(inputs|outputs):[a-z_]+$")
_PREFIXES = (
    "operation:",
    "reverse:",
    "suffix:",
    "inflection:",
    "case:",
    "gender:",
    "script:",
    "script:inputs:",
    "script:outputs:",
)


def is_relation_key(key: str, known: Iterable[str] = ()) -> bool:
    """``key`` is a relation ``relation_facts`` can report (an operation key: of a built-in
    operation or one in ``known``), one of ``known``, or a family prefix such as ``operation:``."""
    if key in FIXED or key in _PREFIXES or _SCRIPT_KEY.match(key):
        return True
    if key.startswith("suffix:") and key[7:8] in ("+", "-") and key[8:] in SUFFIXES:
        return True
    kind, _, rest = key.partition(":")
    if rest and rest in {"inflection": INFLECTION_LABELS, "case": CASE_LABELS, "gender": GENDER_LABELS}.get(
        kind, {}
    ):
        return True
    if key.startswith("operation:") and key[10:] in builtin_operations():
        return True
    if key.startswith(REVERSE) and key[len(REVERSE) :] in builtin_operations():
        return True
    return any(key == k or (key.endswith(":") and k.startswith(key)) for k in known)
