"""Sanity checks for the built-in operation data files.

Uses only the standard library (json + pathlib); does not import project code.
"""

import json
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parent.parent / "describer" / "maps" / "operations" / "data"

EXPECTED = {
    "general_copying": "algorithmic",
    "name_copying": "algorithmic",
    "year_to_following": "algorithmic",
    "word_first_letter": "algorithmic",
    "word_last_letter": "algorithmic",
    "country_to_capital": "knowledge",
    "country_to_language": "knowledge",
    "object_superclass": "knowledge",
    "work_location": "knowledge",
    "product_by_company": "knowledge",
    "adj_antonym": "linguistic",
    "adj_comparative": "linguistic",
    "adj_superlative": "linguistic",
    "verb_past_tense": "linguistic",
    "entity_to_pronoun": "linguistic",
    "word_to_synonym": "linguistic",
    "word_to_homophone": "linguistic",
    "word_to_compound": "linguistic",
    "english_to_french": "translation",
    "english_to_spanish": "translation",
}
COPYING = {"general_copying", "name_copying"}
CATEGORIES = {"algorithmic", "knowledge", "linguistic", "translation"}
KEY_TYPES = {
    "name": str,
    "category": str,
    "paper_name": str,
    "description": str,
    "copying": bool,
    "pairs": list,
}
MIN_PAIRS = 60


def _load_all():
    ops = {}
    for path in sorted(DATA_DIR.glob("*.json")):
        with path.open(encoding="utf-8") as fh:
            ops[path.stem] = json.load(fh)
    return ops


OPS = _load_all()


def test_exactly_expected_operations():
    assert set(OPS) == set(EXPECTED)


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_schema(stem):
    op = OPS[stem]
    assert set(op) == set(KEY_TYPES)
    for key, typ in KEY_TYPES.items():
        assert type(op[key]) is typ, (key, type(op[key]))
    assert op["name"] == stem
    assert op["category"] in CATEGORIES
    assert op["category"] == EXPECTED[stem]
    assert op["paper_name"].strip() and op["description"].strip()
    assert op["copying"] == (stem in COPYING)


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_pairs_well_formed(stem):
    pairs = OPS[stem]["pairs"]
    assert len(pairs) >= MIN_PAIRS
    for pair in pairs:
        assert isinstance(pair, list) and len(pair) == 2, pair
        for word in pair:
            assert isinstance(word, str) and word, pair
            assert word == word.strip(), pair
    sources = [s for s, _ in pairs]
    dupes = sorted({s for s in sources if sources.count(s) > 1})
    assert not dupes, dupes


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_copying_semantics(stem):
    op = OPS[stem]
    if op["copying"]:
        bad = [p for p in op["pairs"] if p[0] != p[1]]
    else:
        bad = [p for p in op["pairs"] if p[0] == p[1]]
    assert not bad, bad


def test_first_letter():
    for src, tgt in OPS["word_first_letter"]["pairs"]:
        assert tgt == src[0], (src, tgt)


def test_last_letter():
    for src, tgt in OPS["word_last_letter"]["pairs"]:
        assert tgt == src[-1], (src, tgt)


def test_year_to_following():
    for src, tgt in OPS["year_to_following"]["pairs"]:
        assert src.isdigit(), src
        assert tgt == str(int(src) + 1), (src, tgt)


@pytest.mark.parametrize("stem", ["adj_comparative", "adj_superlative"])
def test_degree_targets_single_word(stem):
    for src, tgt in OPS[stem]["pairs"]:
        # single-word forms only: no periphrastic "more X" / "most X"
        assert " " not in tgt, (src, tgt)
        assert tgt.isalpha(), (src, tgt)


def test_no_multiword_entries():
    for stem, op in OPS.items():
        for src, tgt in op["pairs"]:
            assert " " not in src and " " not in tgt, (stem, src, tgt)
