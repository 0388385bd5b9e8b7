"""Token-level rules of the relation evidence (``describer.maps.relations``): normalising a
token, suffix spellings, shared stems, sequences (numbers, ordinals, weekdays, months, letters)
and the script of a token's letters."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache

SUFFIXES = ("s", "es", "ed", "d", "ing", "er", "est", "ly", "ness", "ment", "ion")
"""Suffixes of ``suffix:+S`` (the output adds S to the source) and ``suffix:-S`` (removes it)."""


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_EDGE = re.compile(r"^[\s▁Ġ]+|[\s▁Ġ]+$")
_VOWELS = frozenset("aeiou")


def normalise(token: str) -> str:
    """A token without surrounding whitespace and SentencePiece / GPT-2 space markers."""
    return _EDGE.sub("", token)


def word_key(token: str) -> str:
    """A token as a word to compare: normalised and casefolded."""
    return normalise(token).casefold()


# --- suffix morphology ----------------------------------------------------------------------------


def _forms(word: str, suffix: str) -> set[str]:
    """The spellings of ``word`` + ``suffix`` (casefolded): plain, y → i (carried, happier),
    a doubled final consonant (stopped, bigger), a dropped final e (making, nicer, creation),
    -le → -ly (simply), f(e) → ves (leaves)."""
    forms = {word + suffix}
    last, before = word[-1], word[-2]
    if last == "y" and before not in _VOWELS and suffix in ("es", "ed", "er", "est", "ly", "ness", "ment"):
        forms.add(word[:-1] + "i" + suffix)
    if (
        suffix in ("ed", "ing", "er", "est")
        and len(word) >= 3
        and last not in _VOWELS
        and last not in "wxy"
        and before in _VOWELS
        and word[-3] not in _VOWELS
    ):
        forms.add(word + last + suffix)
    if last == "e" and before != "e" and suffix in ("ing", "er", "est", "ion"):
        forms.add(word[:-1] + suffix)
    if suffix == "ly" and word.endswith("le"):
        forms.add(word[:-1] + "y")
    if suffix == "es" and last == "f":
        forms.add(word[:-1] + "ves")
    if suffix == "es" and word.endswith("fe"):
        forms.add(word[:-2] + "ves")
    return forms


def suffix_keys(source: str, output: str) -> list[str]:
    """The suffix keys (casefolded words) ``output`` satisfies for ``source``."""
    found = []
    for base, other, sign in ((source, output, "+"), (output, source, "-")):
        # Every spelling keeps all but the last two letters of the base and adds at most 5.
        stem = len(base) - 2
        if len(base) < 2 or other[:stem] != base[:stem] or not -1 <= len(other) - len(base) <= 5:
            continue
        if base.isalpha() and other != base:
            found += [f"suffix:{sign}{s}" for s in SUFFIXES if other in _forms(base, s)]
    return found


def shares_stem(source: str, output: str) -> bool:
    """Different words sharing a prefix of at least 4 letters and 60% of the shorter one."""
    if source == output:
        return False
    n = 0
    for a, b in zip(source, output, strict=False):
        if a != b or not a.isalpha():
            break
        n += 1
    return n >= 4 and n >= 0.6 * min(len(source), len(output))


# --- sequences --------------------------------------------------------------------------------

_NUMBERS = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
)
_ORDINALS = _words(
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"
)
_WEEKDAYS = _words("monday tuesday wednesday thursday friday saturday sunday")
_WEEKDAY_ABBR = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHS = _words("january february march april may june july august september october november december")
_MONTH_ABBR = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_ORDINAL_DIGITS = re.compile(r"^(\d{1,9})(st|nd|rd|th)$")


def _build_sequences() -> dict[str, list[tuple[str, int, int]]]:
    """word -> [(sequence, position, cycle length or 0)] for the named sequences."""
    table: dict[str, list[tuple[str, int, int]]] = {}
    named = (
        ("number", _NUMBERS, 0),
        ("ordinal", _ORDINALS, 0),
        ("weekday", _WEEKDAYS, 7),
        ("weekday", _WEEKDAY_ABBR, 7),
        ("month", _MONTHS, 12),
        ("month", _MONTH_ABBR, 12),
    )
    for name, words, cycle in named:
        for i, word in enumerate(words):
            table.setdefault(word, []).append((name, i, cycle))
    table["sept"] = [("month", 8, 12)]
    table["tues"] = [("weekday", 1, 7)]
    table["thur"] = table["thurs"] = [("weekday", 3, 7)]
    return table


_SEQUENCES = _build_sequences()


def _positions(word: str) -> list[tuple[str, int, int]]:
    """Where a casefolded word sits in a sequence: integers (and number words), ordinals,
    weekdays, months (both cyclic), single letters (by code point)."""
    found = list(_SEQUENCES.get(word, ()))
    if word.isdecimal() and len(word) <= 18:
        found.append(("number", int(word), 0))
    elif (m := _ORDINAL_DIGITS.match(word)) is not None:
        found.append(("ordinal", int(m.group(1)), 0))
    elif len(word) == 1 and word.isalpha():
        found.append(("letter", ord(word), 0))
    return found


def follows(source: str, output: str) -> bool:
    """``output`` is the item after ``source`` in one of the sequences."""
    for seq, i, cycle in _positions(source):
        for other, j, _ in _positions(output):
            if other == seq and (j == i + 1 or (cycle and j == (i + 1) % cycle)):
                return True
    return False


# --- scripts --------------------------------------------------------------------------------------

_NAME_PREFIXES = frozenset({"FULLWIDTH", "HALFWIDTH", "MATHEMATICAL", "CIRCLED", "PARENTHESIZED", "SQUARED"})
_CJK = frozenset({"CJK", "HIRAGANA", "KATAKANA", "IDEOGRAPHIC", "BOPOMOFO"})


@lru_cache(maxsize=65536)
def _script(ch: str) -> str | None:
    """The script of a letter or mark from its Unicode name (LATIN, CYRILLIC, CJK, …)."""
    if not unicodedata.category(ch).startswith(("L", "M")):
        return None
    words = [w for w in unicodedata.name(ch, "").split() if w not in _NAME_PREFIXES]
    if not words or words[0] in ("COMBINING", "MODIFIER"):
        return None
    return "CJK" if words[0] in _CJK else words[0]


@lru_cache(maxsize=65536)
def token_class(token: str) -> str:
    """``latin``, ``cyrillic``, ``cjk``, … (the script of most of its letters), else ``digits``,
    ``symbols`` (punctuation and symbols) or ``whitespace``."""
    text = normalise(token)
    scripts = Counter(s for s in map(_script, text) if s is not None)
    if scripts:
        return scripts.most_common(1)[0][0].lower()
    if not text:
        return "whitespace"
    return "digits" if any(c.isdecimal() for c in text) else "symbols"
