"""Relation evidence (``describer.maps.relations``): each relation found on a table where it
holds and not on shuffled or random tables, counts and fractions, token normalisation, the
``top`` / ``min_rows`` / ``min_fraction`` filters, and the order of the facts."""

from __future__ import annotations

import random

import pytest

from describer.maps.operations import builtin_operations
from describer.maps.relations import (
    RelationFact,
    is_relation_key,
    normalise,
    operation_label,
    relation_facts,
    token_class,
)


def facts(rows: list[tuple[str, list[str]]], **kwargs: object) -> dict[str, RelationFact]:
    return {f.relation: f for f in relation_facts(rows, **kwargs)}


def one_row(source: str, output: str) -> set[str]:
    """The relations a two-row table of the same pair satisfies (every relation, no filter)."""
    return set(facts([(source, [output])] * 2, min_fraction=0.0))


def non_context(found: dict[str, RelationFact]) -> dict[str, RelationFact]:
    return {k: f for k, f in found.items() if not k.startswith("script:")}


def test_fact_text_and_fraction() -> None:
    fact = RelationFact("operation:country_to_capital", "country → capital", 13, 15)
    assert fact.text() == "13 of 15 rows: country → capital"
    assert fact.fraction == pytest.approx(13 / 15)
    assert RelationFact("copy", "x", 1, 1).text() == "1 of 1 rows: x"
    assert RelationFact("copy", "x", 0, 0).fraction == 0.0


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (" Paris", "Paris"),
        ("▁Paris", "Paris"),
        ("ĠParis", "Paris"),
        ("Paris\n", "Paris"),
        ("▁ ▁x", "x"),
        ("Ġ", ""),
    ],
)
def test_normalise(token: str, expected: str) -> None:
    assert normalise(token) == expected


def test_copy_ignores_case_space_and_markers() -> None:
    rows = [(" Paris", ["▁paris", " x"]), ("ĠDog", [" DOG"]), ("cat", ["Ġcat "]), (" tree", [" leaf"])]
    copy = facts(rows)["copy"]
    assert (copy.rows, copy.n_rows) == (3, 4)
    assert copy.examples == ((" Paris", "▁paris"), ("ĠDog", " DOG"), ("cat", "Ġcat "))
    assert copy.label == "maps to itself (or a case/space variant)"
    assert "copy" not in facts([(" Paris", [" Paris!"]), (" dog", [" dogs"])], min_fraction=0.0)


def test_stem_is_a_shared_prefix_of_different_words() -> None:
    assert "stem" in one_row(" nation", " national")
    assert "stem" in one_row(" Москва", " Москвы")
    assert "stem" not in one_row(" nation", " nation")  # equal: that is copy
    assert "stem" not in one_row(" France", " French")  # prefix of 2
    assert "stem" not in one_row(" international", " interview")  # 5 of 9: under 60%


@pytest.mark.parametrize(
    ("source", "output", "key"),
    [
        ("walk", "walked", "suffix:+ed"),
        ("stop", "stopped", "suffix:+ed"),
        ("carry", "carried", "suffix:+ed"),
        ("bake", "baked", "suffix:+d"),
        ("cat", "cats", "suffix:+s"),
        ("tree", "trees", "suffix:+s"),
        ("box", "boxes", "suffix:+es"),
        ("city", "cities", "suffix:+es"),
        ("leaf", "leaves", "suffix:+es"),
        ("run", "running", "suffix:+ing"),
        ("make", "making", "suffix:+ing"),
        ("play", "playing", "suffix:+ing"),
        ("big", "bigger", "suffix:+er"),
        ("happy", "happier", "suffix:+er"),
        ("nice", "nicer", "suffix:+er"),
        ("tall", "tallest", "suffix:+est"),
        ("easy", "easiest", "suffix:+est"),
        ("quick", "quickly", "suffix:+ly"),
        ("happy", "happily", "suffix:+ly"),
        ("simple", "simply", "suffix:+ly"),
        ("kind", "kindness", "suffix:+ness"),
        ("happy", "happiness", "suffix:+ness"),
        ("move", "movement", "suffix:+ment"),
        ("act", "action", "suffix:+ion"),
        ("create", "creation", "suffix:+ion"),
        ("walked", "walk", "suffix:-ed"),
        ("cats", "cat", "suffix:-s"),
        ("running", "run", "suffix:-ing"),
        ("cities", "city", "suffix:-es"),
    ],
)
def test_suffixes(source: str, output: str, key: str) -> None:
    found = {k for k in one_row(" " + source, "▁" + output.capitalize()) if k.startswith("suffix:")}
    assert found == {key}  # exactly one suffix explains the pair


def test_suffix_labels_and_non_matches() -> None:
    rows = [(" walk", [" walked"]), (" jump", [" x", " jumped"]), (" talk", [" talked"]), (" dog", [" cat"])]
    fact = facts(rows)["suffix:+ed"]
    assert (fact.rows, fact.n_rows, fact.label) == (3, 4, "adds -ed")
    assert fact.examples[1] == (" jump", " jumped")  # the matching output, not the first
    assert facts([(" walked", [" walk"])] * 2)["suffix:-ed"].label == "removes -ed"
    for source, output in (("walk", "walker2"), ("1", "1s"), ("a", "as"), ("cat", "cat"), ("sing", "sang")):
        assert not any(k.startswith("suffix:") for k in one_row(source, output)), (source, output)


def test_builtin_operation_pairs_match_case_insensitively() -> None:
    rows = [
        (" France", [" the", " Paris"]),
        ("▁germany", ["▁BERLIN"]),
        ("ĠItaly", ["ĠRome"]),
        (" dog", [" cat"]),
    ]
    fact = facts(rows)["operation:country_to_capital"]
    assert (fact.rows, fact.n_rows) == (3, 4)
    assert fact.label == "country → capital"
    assert fact.examples[0] == (" France", " Paris")
    irregular = [(" go", [" went"]), (" see", [" saw"]), (" eat", [" ate"])]
    assert facts(irregular)["operation:verb_past_tense"].rows == 3  # no suffix explains these


def test_shuffled_operation_pairs_match_nothing() -> None:
    pairs = list(builtin_operations()["country_to_capital"].pairs)[:15]
    targets = [t for _, t in pairs]
    shuffled = [(" " + s, [" " + targets[(i + 5) % len(targets)]]) for i, (s, _) in enumerate(pairs)]
    assert not non_context(facts(shuffled))
    straight = [(" " + s, [" " + t]) for s, t in pairs]
    assert facts(straight)["operation:country_to_capital"].rows == 15


def test_given_operations_replace_the_builtin_ones() -> None:
    rows = [(" red", [" rouge"]), (" blue", [" bleu"]), (" France", [" Paris"])]
    mine = [("colour_to_french", [("red", "rouge"), ("Blue", "BLEU")])]
    found = facts(rows, operations=mine)
    assert found["operation:colour_to_french"].rows == 2
    assert found["operation:colour_to_french"].label == "colour → French"
    assert "operation:country_to_capital" not in found
    assert not any(k.startswith("operation:") for k in facts(rows, operations=[]))
    # A name given twice: its pairs together.
    twice = [("colours", [("red", "rouge")]), ("colours", [("blue", "bleu")])]
    assert facts(rows, operations=twice)["operation:colours"].rows == 2


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("country_to_capital", "country → capital"),
        ("product_by_company", "product → company"),
        ("adj_antonym", "adjective → antonym"),
        ("verb_past_tense", "verb → past tense"),
        ("english_to_french", "English → French"),
        ("general_copying", "general copying"),
        ("work_location", "work location"),
        ("my-pairs", "my pairs"),
    ],
)
def test_operation_labels(name: str, label: str) -> None:
    assert operation_label(name) == label


def test_every_builtin_operation_has_a_readable_label() -> None:
    for name in builtin_operations():
        label = operation_label(name)
        assert "_" not in label and label.strip() == label and label


@pytest.mark.parametrize(
    ("source", "output"),
    [
        ("7", "8"),
        ("1999", "2000"),
        ("three", "four"),
        ("nine", "10"),
        ("first", "second"),
        ("3rd", "4th"),
        ("Monday", "Tuesday"),
        ("Sunday", "Monday"),
        ("Fri", "Sat"),
        ("December", "January"),
        ("Mar", "April"),
        ("a", "b"),
        ("Y", "z"),
        ("α", "β"),
    ],
)
def test_successor_and_predecessor(source: str, output: str) -> None:
    forward = one_row(" " + source, " " + output)
    assert "successor" in forward and "predecessor" not in forward
    backward = one_row(" " + output, " " + source)
    assert "predecessor" in backward and "successor" not in backward


def test_no_successor_for_unrelated_items() -> None:
    for source, output in (("7", "9"), ("Monday", "Wednesday"), ("a", "c"), ("z", "a"), ("twenty", "one")):
        assert not {"successor", "predecessor"} & one_row(source, output), (source, output)


def test_constant_output_names_the_token() -> None:
    rows = [(f" w{i}", [" x", " the"] if i % 3 else [" the"]) for i in range(9)]
    rows += [(" a", [" b"]), (" c", [" d"]), (" e", ["▁The"])]
    fact = facts(rows)["constant"]
    assert (fact.rows, fact.n_rows) == (10, 12)
    assert fact.label == "the same output ' the' for most inputs"
    assert fact.examples == ((" w0", " the"), (" w1", " the"), (" w2", " the"))
    # Under half of the rows: no constant.
    assert "constant" not in facts(rows[:4] + [(f" z{i}", [f" y{i}"]) for i in range(5)], min_fraction=0.0)


def test_script_of_inputs_and_outputs() -> None:
    rows = [
        (" кошка", [" 猫", " cat"]),
        (" собака", [" 犬"]),
        ("▁город", ["ネコ", "とり", " x"]),
        (" Paris", [" 東京"]),
        (" 12", [" !"]),
    ]
    found = facts(rows)
    inputs, outputs = found["script:inputs:cyrillic"], found["script:outputs:cjk"]
    assert (inputs.rows, outputs.rows) == (3, 4)
    assert inputs.label == "inputs are mostly non-Latin (Cyrillic)"
    assert outputs.label == "outputs are mostly CJK"
    assert outputs.examples[:3] == ((" кошка", " 猫"), (" собака", " 犬"), ("▁город", "ネコ"))
    latin = facts([(" dog", [" cat"]), (" tree", [" Baum"])])
    assert latin["script:inputs:latin"].label == "inputs are mostly Latin-script words"
    mixed = facts([(" кошка", [" x"]), (" собака", [" y"]), (" 猫", [" z"]), (" 1", [" w"]), (" !", [" v"])])
    assert (
        mixed["script:inputs:cyrillic"].label
        == "inputs are of mixed scripts, most often non-Latin (Cyrillic)"
    )
    assert mixed["script:inputs:cyrillic"].rows == 2


@pytest.mark.parametrize(
    ("token", "cls"),
    [
        (" Hello", "latin"),
        ("▁Ünïcödé", "latin"),
        ("Ｈｅｌｌｏ", "latin"),
        ("Привет", "cyrillic"),
        ("αβγ", "greek"),
        ("مرحبا", "arabic"),
        ("שלום", "hebrew"),
        ("漢字", "cjk"),
        ("ひらがな", "cjk"),
        ("カタカナ", "cjk"),
        ("한국어", "hangul"),
        ("नमस्ते", "devanagari"),
        ("สวัสดี", "thai"),
        (" 2024", "digits"),
        ("1,000", "digits"),
        (" ...", "symbols"),
        ("�", "symbols"),
        ("Ġ", "whitespace"),
        ("\n", "whitespace"),
    ],
)
def test_token_class(token: str, cls: str) -> None:
    assert token_class(token) == cls


def test_digits_and_symbols_classes_have_labels() -> None:
    found = facts([(" 1", [" ,"]), (" 22", [" ;"]), (" 5", [" ."])])
    assert found["script:inputs:digits"].label == "inputs are mostly numbers (digits)"
    assert found["script:outputs:symbols"].label == "outputs are mostly punctuation/symbols"


def test_only_the_first_top_outputs_count() -> None:
    rows = [(" dog", [" a", " b", " c", " d", " e", " dog"])] * 3
    assert "copy" not in facts(rows)
    assert facts(rows, top=6)["copy"].rows == 3
    assert "copy" not in facts([(" dog", [" cat", " dog"])] * 2, top=1)


def test_min_rows_and_min_fraction() -> None:
    rows = [(" dog", [" dog"]), (" cat", [" cat"])] + [(f" w{i}", [f" v{i}"]) for i in range(8)]
    assert facts(rows)["copy"].fraction == pytest.approx(0.2)  # 0.2 is kept
    assert "copy" not in facts(rows, min_fraction=0.21)
    assert "copy" not in facts(rows, min_rows=3)
    assert "copy" not in facts(rows[:1] + rows[2:], min_fraction=0.0)  # one row is below min_rows=2
    assert "copy" in facts(rows[:1], min_rows=1)
    assert relation_facts([]) == []


def test_facts_are_ordered_by_fraction_then_priority() -> None:
    rows = [(" France", [" Paris", " France"]), (" Germany", [" Berlin", " Germany"]), (" Spain", [" x"])]
    order = [f.relation for f in relation_facts(rows)]
    # Equal fractions (2 of 3): the operation, then copying; the script facts (3 of 3) lead.
    assert order == [
        "script:inputs:latin",
        "script:outputs:latin",
        "operation:country_to_capital",
        "copy",
    ]
    fractions = [f.fraction for f in relation_facts(rows)]
    assert fractions == sorted(fractions, reverse=True)


def test_examples_are_at_most_three_in_table_order() -> None:
    rows = [(f" w{i}", [f"▁W{i}"]) for i in range(6)]
    copy = facts(rows)["copy"]
    assert copy.examples == ((" w0", "▁W0"), (" w1", "▁W1"), (" w2", "▁W2"))


def _junk(seed: int, n: int = 15) -> list[tuple[str, list[str]]]:
    """Random unrelated tokens: sources and outputs drawn from every built-in word."""
    words = sorted({w for op in builtin_operations().values() for pair in op.pairs for w in pair})
    rng = random.Random(seed)
    marks = ("▁", "Ġ", " ", "")
    return [
        (rng.choice(marks) + rng.choice(words), [rng.choice(marks) + rng.choice(words) for _ in range(5)])
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", range(20))
def test_a_junk_table_has_only_context_facts(seed: int) -> None:
    found = relation_facts(_junk(seed))
    assert all(f.relation.startswith("script:") for f in found if f.fraction > 0.2), found


def test_a_mixed_table() -> None:
    rows = [
        (" walk", [" walked", " walking"]),
        (" talk", [" talked"]),
        (" go", [" went"]),
        (" play", [" playing", " played"]),
        (" jump", [" jumps"]),
        (" Monday", [" Tuesday"]),
        (" 4", [" 5"]),
        (" dog", [" cat"]),
    ]
    found = facts(rows)
    assert found["suffix:+ed"].rows == 3
    assert found["operation:verb_past_tense"].rows == 4
    assert found["successor"].rows == 2 and found["successor"].fraction == 0.25
    assert found["suffix:+ing"].rows == 2  # 0.25: kept
    assert "suffix:+s" not in found and facts(rows, min_fraction=0.0, min_rows=1)["suffix:+s"].rows == 1


def test_relation_keys() -> None:
    for key in (
        "copy",
        "stem",
        "constant",
        "successor",
        "suffix:+ed",
        "suffix:-s",
        "operation:country_to_capital",
        "operation:",
        "suffix:",
        "script:outputs:cjk",
        "script:inputs:",
    ):
        assert is_relation_key(key), key
    for key in ("cop", "suffix:+xyz", "operation:nope", "script:sideways:latin", "", "operation"):
        assert not is_relation_key(key), key
    assert is_relation_key("operation:mine", known=["operation:mine"])
    assert is_relation_key("operation:m", known=["operation:mine"]) is False
