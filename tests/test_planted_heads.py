"""The describer benchmark's planted heads: deterministic tables whose operation is known, the
target in exactly the asked fraction of rows, junk with no relation, and the keyword rule."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.planted_heads import (
    JUNK_OPERATION,
    KEYWORDS,
    OPERATIONS,
    PlantedHead,
    is_right,
    planted_heads,
    write_mappings_file,
)
from benchmarks.planted_vocab import JUNK, PAIRS
from describer.mapping_tables import MappingTable, load_mapping_tables
from store.labels import CATEGORIES


def bare(token: str) -> str:
    return token.strip().lower()


def hits(head: PlantedHead) -> list[bool]:
    return [target in outputs for target, (_, outputs) in zip(head.targets, head.table.rows, strict=True)]


def real(heads: list[PlantedHead]) -> list[PlantedHead]:
    return [h for h in heads if h.operation != JUNK_OPERATION]


# --- the heads ----------------------------------------------------------------------------------


def test_the_default_heads() -> None:
    heads = planted_heads()
    assert len(OPERATIONS) >= 12
    assert [h.name for h in heads] == [f"{op}-1" for op in OPERATIONS] + ["junk-1", "junk-2"]
    assert [h.operation for h in heads] == [*OPERATIONS, "junk", "junk"]
    for head in heads:
        assert head.table.name == head.name
        assert len(head.table.rows) == 15
        assert len({source for source, _ in head.table.rows}) == 15
        for _, outputs in head.table.rows:
            assert len(outputs) == 5 == len(set(outputs))
        assert len(head.targets) == (0 if head.operation == "junk" else 15)


def test_every_vocabulary_is_real_pairs_of_distinct_sources() -> None:
    assert set(PAIRS) == set(OPERATIONS) == set(KEYWORDS)
    for op, pairs in PAIRS.items():
        assert len(pairs) >= 25, op
        assert len({s for s, _ in pairs}) == len(pairs), op
        assert all(s and t and " " not in s + t for s, t in pairs), op
        assert all(s == t for s, t in pairs) == (op == "copying"), op


def test_each_target_is_its_sources_pair() -> None:
    for head in real(planted_heads(5, rows=25)):
        pairs = dict(PAIRS[head.operation])
        for (source, _), target in zip(head.table.rows, head.targets, strict=True):
            space = source[: len(source) - len(source.lstrip(" "))]
            assert target == space + pairs[source.strip()]  # the same spacing as the source


def test_deterministic_for_a_seed() -> None:
    assert planted_heads(3) == planted_heads(3)
    assert planted_heads(3, rows=20, mappings=8) == planted_heads(3, rows=20, mappings=8)
    assert [h.table for h in planted_heads(3)] != [h.table for h in planted_heads(4)]


def test_a_head_depends_only_on_the_seed_and_its_name() -> None:
    everything = {h.name: h for h in planted_heads(7, per_operation=2, junk=3)}
    some = planted_heads(7, operations=["plural", "antonym"], per_operation=2, junk=1)
    assert [h.name for h in some] == ["plural-1", "plural-2", "antonym-1", "antonym-2", "junk-1"]
    assert all(everything[h.name] == h for h in some)
    assert everything["plural-1"].table.rows != everything["plural-2"].table.rows


def test_tokens_look_like_bpe_tokens() -> None:
    sources = [s for h in real(planted_heads(0, per_operation=4)) for s, _ in h.table.rows]
    spaced = sum(s.startswith(" ") for s in sources) / len(sources)
    assert 0.75 < spaced < 0.95  # most words carry a leading space, some do not
    assert not any(s.startswith("  ") for s in sources)


@pytest.mark.parametrize(("signal", "rows"), [(0.0, 15), (0.5, 15), (0.8, 15), (1.0, 15), (0.3, 25)])
def test_the_target_is_present_in_exactly_the_signal_fraction_of_rows(signal: float, rows: int) -> None:
    for seed in range(3):
        for head in real(planted_heads(seed, rows=rows, signal=signal)):
            assert sum(hits(head)) == round(signal * rows), head.name


def test_the_target_is_mostly_at_rank_0_but_not_always() -> None:
    ranks: Counter[int] = Counter()
    for seed in range(10):
        for head in real(planted_heads(seed, signal=1.0)):
            ranks.update(
                outputs.index(t) for t, (_, outputs) in zip(head.targets, head.table.rows, strict=True)
            )
    assert ranks.most_common(1)[0][0] == 0
    assert set(ranks) == {0, 1, 2, 3, 4}
    assert 0.4 < ranks[0] / ranks.total() < 0.65
    assert ranks[0] > ranks[1] > ranks[2] > ranks[4]


def test_rows_without_the_target_hold_no_variant_of_it() -> None:
    for seed in range(5):
        for head in real(planted_heads(seed, signal=0.5)):
            for hit, target, (source, outputs) in zip(hits(head), head.targets, head.table.rows, strict=True):
                assert source not in outputs or head.operation == "copying"
                if not hit:
                    assert bare(target) not in {bare(o) for o in outputs}, (head.name, source, outputs)


def test_the_noise_is_varied() -> None:
    outputs = [o for h in real(planted_heads(0)) for _, row in h.table.rows for o in row]
    assert any(o in (",", ".", ";", "'s") for o in outputs)  # punctuation
    assert any(o in ("ing", "ed", " the", " of") for o in outputs)  # common subwords
    assert len(set(outputs)) > len(outputs) / 3


def test_junk_has_no_planted_relation() -> None:
    words = {w.lower() for pairs in PAIRS.values() for pair in pairs for w in pair}
    assert not {bare(t) for t in JUNK} & words
    relations = {(s.lower(), t.lower()) for pairs in PAIRS.values() for s, t in pairs}
    for seed in range(5):
        for head in planted_heads(seed, junk=4, operations=[]):
            assert head.operation == "junk" and head.targets == ()
            for source, outputs in head.table.rows:
                assert source in JUNK and set(outputs) <= set(JUNK)
                assert bare(source) not in {bare(o) for o in outputs}  # no copying, not even a variant
                assert not {(bare(source), bare(o)) for o in outputs} & relations
            counts = Counter(o for _, outputs in head.table.rows for o in outputs)
            assert max(counts.values()) <= 4  # no output shared by the rows


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown operations"):
        planted_heads(operations=["plural", "nonsense"])
    with pytest.raises(ValueError, match="rows"):
        planted_heads(rows=0)
    with pytest.raises(ValueError, match="rows"):
        planted_heads(rows=31)  # more than the smallest vocabulary
    assert len(planted_heads(rows=60, operations=["past_tense"], junk=0)[0].table.rows) == 60
    with pytest.raises(ValueError, match="mappings"):
        planted_heads(mappings=0)
    with pytest.raises(ValueError, match="mappings"):
        planted_heads(mappings=101)
    with pytest.raises(ValueError, match="signal"):
        planted_heads(signal=1.5)
    with pytest.raises(ValueError, match="negative"):
        planted_heads(junk=-1)


# --- the keyword rule ---------------------------------------------------------------------------

CANONICAL = {
    "copying": "Each input token is mapped to itself",
    "country_to_capital": "Maps each country to its capital city",
    "country_to_language": "Maps each country to the language spoken there",
    "past_tense": "Maps each verb to its past tense",
    "plural": "Maps each noun to its plural",
    "present_participle": "Maps each verb to its -ing form",
    "comparative": "Maps each adjective to its comparative",
    "english_to_french": "Translates English words into French",
    "successor": "Maps each item to the next one in its sequence",
    "antonym": "Maps each word to its opposite",
    "male_to_female": "Maps male nouns to their female counterparts",
    "uppercase": "Converts each word to uppercase",
    "animal_to_young": "Maps each animal to its young",
}


def description(pattern: str, *, unclear: bool = False, inputs: str = "Common words", **more: object) -> dict:
    category = "unclear" if unclear else "latent_reasoning"
    return {"inputs": inputs, "pattern": pattern, "unclear": unclear, "category": category, "tags": []} | more


def test_a_plain_description_of_each_operation_is_right_for_it_and_only_it() -> None:
    assert set(CANONICAL) == set(OPERATIONS)
    for op in OPERATIONS:
        for other, pattern in CANONICAL.items():
            assert is_right(op, description(pattern)) == (op == other), (op, other)


def test_an_unclear_description_is_wrong_for_an_operation_and_right_for_junk() -> None:
    assert not is_right("plural", description("Maps nouns to their plural", unclear=True))
    assert not is_right("plural", description("plural", category="unclear"))
    assert is_right("junk", description("Unclear", unclear=True))
    assert is_right("junk", {"unclear": False, "category": "unclear"})  # one judgement, stated twice
    assert is_right("junk", {"unclear": "true"})
    assert not is_right("junk", description("Maps nouns to their plural"))
    assert not is_right("junk", {"unclear": "false", "pattern": "Unclear"})


def test_every_field_but_reasoning_is_read() -> None:
    assert is_right("plural", description("Changes the word", inputs="Singular nouns, pluralised"))
    assert not is_right("plural", description("Changes the word", inputs="Singular nouns"))
    assert is_right("plural", description("Changes the word", tags=["nouns", "Plural"]))
    assert is_right("english_to_french", description("Maps words", category="Translation"))
    assert not is_right("plural", description("Changes the word", reasoning="they are plurals"))
    assert is_right("past_tense", {"pattern": "PAST TENSE", "unclear": False})  # missing keys, upper case
    assert not is_right("past_tense", {})


def test_the_stated_keywords() -> None:
    assert KEYWORDS["plural"] == ("plural",)
    assert KEYWORDS["past_tense"][0] == "past"
    assert KEYWORDS["country_to_capital"] == ("capital",)
    assert {"copy", "copies", "itself", "same token", "identical", "repeat"} <= set(KEYWORDS["copying"])
    assert {"french", "translat"} <= set(KEYWORDS["english_to_french"])
    assert {"next", "successor", "follow", "increment", "subsequent"} <= set(KEYWORDS["successor"])
    assert {"opposite", "antonym"} <= set(KEYWORDS["antonym"])
    assert {"female", "feminine", "gender", "woman", "women"} <= set(KEYWORDS["male_to_female"])
    assert {"comparative", "more ", "-er", "bigger"} <= set(KEYWORDS["comparative"])
    for op, keywords in KEYWORDS.items():
        assert keywords and all(k == k.lower() for k in keywords), op
        # a category name alone never names an operation
        assert not any(k in category for k in keywords for category in CATEGORIES), op


def test_unknown_operation() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        is_right("nonsense", description("Maps words"))


# --- the mappings file --------------------------------------------------------------------------


def test_write_mappings_file_loads_back(tmp_path: Path) -> None:
    heads = planted_heads(2, rows=12, mappings=6)
    path = tmp_path / "planted.json"
    write_mappings_file(heads, path)
    assert load_mapping_tables(path) == [h.table for h in heads]
    document = json.loads(path.read_text(encoding="utf-8"))
    assert set(document) == {"heads"}
    assert document["heads"][0]["name"] == heads[0].name
    assert set(document["heads"][0]) == {"name", "salient"}  # the operation is not written


def test_write_mappings_file_takes_tables_too(tmp_path: Path) -> None:
    tables = [MappingTable("h", ((" é", (" 的", "\n")),)), *(h.table for h in planted_heads(junk=0)[:2])]
    path = tmp_path / "tables.json"
    write_mappings_file(tables, str(path))
    assert load_mapping_tables(path) == tables
