"""The operations loader: built-ins, selection, users' pairs files and the tokenizer filter."""

from __future__ import annotations

import warnings

import pytest

from describer.errors import HeadmapsError
from describer.maps.operations import (
    LARGE_VOCAB,
    MIN_PAIRS,
    Operation,
    builtin_operations,
    select_operations,
    single_token,
    tokenize,
)
from tests._tiny import build_bpe_tokenizer

CATEGORIES = {
    "algorithmic": {
        "general_copying",
        "name_copying",
        "word_first_letter",
        "word_last_letter",
        "year_to_following",
    },
    "knowledge": {
        "country_to_capital",
        "country_to_language",
        "object_superclass",
        "product_by_company",
        "work_location",
    },
    "linguistic": {
        "adj_antonym",
        "adj_comparative",
        "adj_superlative",
        "entity_to_pronoun",
        "verb_past_tense",
        "word_to_compound",
        "word_to_homophone",
        "word_to_synonym",
    },
    "translation": {"english_to_french", "english_to_spanish"},
}

WORDS = [f"w{chr(97 + i)}{chr(97 + j)}" for i in range(8) for j in range(8)]
"""64 distinct words, each a single leading-space token of the ``tok`` fixture."""


@pytest.fixture(scope="module")
def tok() -> object:
    return build_bpe_tokenizer(WORDS)


def op(pairs: list[tuple[str, str]], copying: bool = False, name: str = "test_op") -> Operation:
    return Operation(name=name, category="custom", copying=copying, pairs=tuple(pairs))


def ids_of(tokenizer: object, word: str) -> list[int]:
    return tokenizer.encode(" " + word, add_special_tokens=False)


# --- built-ins ---------------------------------------------------------------------------------


def test_builtin_operations_twenty_with_categories() -> None:
    ops = builtin_operations()
    assert len(ops) == 20
    by_category: dict[str, set[str]] = {}
    for name, operation in ops.items():
        assert operation.name == name
        assert operation.origin == "builtin"
        assert operation.description
        assert len(operation.pairs) >= MIN_PAIRS
        by_category.setdefault(operation.category, set()).add(name)
    assert by_category == CATEGORIES
    assert {n for n, o in ops.items() if o.copying} == {"general_copying", "name_copying"}
    assert all(s == t for s, t in ops["general_copying"].pairs)
    assert ("France", "Paris") in ops["country_to_capital"].pairs
    assert builtin_operations() is ops  # loaded once


def test_builtin_operations_are_frozen() -> None:
    operation = builtin_operations()["general_copying"]
    with pytest.raises(Exception):  # noqa: B017  (pydantic's frozen-instance ValidationError)
        operation.k = 5  # type: ignore[attr-defined]
    with pytest.raises(Exception):  # noqa: B017
        operation.name = "other"


@pytest.mark.parametrize(
    ("copying", "vocab", "expected"),
    [
        (True, 50_000, 1),
        (False, 50_000, 10),
        (True, LARGE_VOCAB, 1),
        (False, LARGE_VOCAB, 10),
        (True, LARGE_VOCAB + 1, 3),
        (False, LARGE_VOCAB + 1, 25),
        (True, 128_256, 3),
        (False, 262_144, 25),
    ],
)
def test_default_k(copying: bool, vocab: int, expected: int) -> None:
    assert op([("a", "b")], copying=copying).default_k(vocab) == expected


def test_default_k_of_builtins() -> None:
    ops = builtin_operations()
    assert ops["name_copying"].default_k(32_000) == 1
    assert ops["name_copying"].default_k(151_936) == 3
    assert ops["country_to_capital"].default_k(32_000) == 10
    assert ops["country_to_capital"].default_k(151_936) == 25


# --- selection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("names", ["all", None, "", "  all  "])
def test_select_all(names: str | None) -> None:
    chosen = select_operations(names)
    assert [o.name for o in chosen] == list(builtin_operations())
    assert len(chosen) == 20


def test_select_comma_list_keeps_order_and_strips() -> None:
    chosen = select_operations("year_to_following, adj_antonym,general_copying")
    assert [o.name for o in chosen] == ["year_to_following", "adj_antonym", "general_copying"]
    assert chosen[0] is builtin_operations()["year_to_following"]


def test_select_same_name_twice_once() -> None:
    chosen = select_operations("adj_antonym,general_copying,adj_antonym")
    assert [o.name for o in chosen] == ["adj_antonym", "general_copying"]


def test_select_single() -> None:
    (chosen,) = select_operations("work_location")
    assert chosen.category == "knowledge"


@pytest.mark.parametrize("names", ["no_such_op", "general_copying,no_such_op", "General_Copying"])
def test_select_unknown_names_the_builtins(names: str) -> None:
    with pytest.raises(HeadmapsError) as info:
        select_operations(names)
    message = str(info.value)
    assert repr(names.split(",")[-1]) in message
    assert "\n" not in message
    for name in builtin_operations():
        assert name in message


# --- tokenize ---------------------------------------------------------------------------------------


def test_tokenizer_fixture_behaves_like_bpe(tok: object) -> None:
    assert len(ids_of(tok, "wab")) == 1
    assert len(tok.encode("wab", add_special_tokens=False)) > 1  # no leading space: bytes
    assert len(ids_of(tok, "zebra")) > 1  # unknown words split, never <unk>


def test_tokenize_keeps_single_token_pairs(tok: object) -> None:
    pairs = [(WORDS[i], WORDS[i + 1]) for i in range(40)]
    pairs += [("zebra", WORDS[0]), (WORDS[0], "zebra"), ("two words", WORDS[1])]
    operation = op(pairs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 40 pairs: no warning
        result = tokenize(operation, tok, len(tok))
    assert result.n_pairs == 40
    assert result.dropped == 3
    assert result.operation is operation
    assert list(result.source_ids) == [ids_of(tok, w)[0] for w in WORDS[:40]]
    assert list(result.target_ids) == [ids_of(tok, w)[0] for w in WORDS[1:41]]
    # the ids are the leading-space tokens, not the bare word's
    assert tok.decode([result.source_ids[0]]) == " " + WORDS[0]


def test_tokenize_dedups_pairs(tok: object) -> None:
    pairs = [(w, w) for w in WORDS[:35]] * 2 + [(" " + WORDS[0], WORDS[0])]
    result = tokenize(op(pairs, copying=True), tok, len(tok))
    assert result.n_pairs == 35
    assert result.dropped == 36  # duplicates count as dropped
    assert len(set(zip(result.source_ids, result.target_ids, strict=True))) == 35


@pytest.mark.parametrize(
    ("copying", "vocab", "k", "expected"),
    [(True, None, None, 1), (False, None, None, 10), (False, None, 4, 4), (True, 200_000, None, 3)],
)
def test_tokenize_k(tok: object, copying: bool, vocab: int | None, k: int | None, expected: int) -> None:
    pairs = [(w, w) for w in WORDS[:30]]
    result = tokenize(op(pairs, copying=copying), tok, vocab or len(tok), k)
    assert result.k == expected


@pytest.mark.parametrize("k", [0, -3])
def test_tokenize_rejects_k_below_one(tok: object, k: int) -> None:
    with pytest.raises(HeadmapsError, match="k must be at least 1"):
        tokenize(op([(w, w) for w in WORDS[:30]]), tok, len(tok), k=k)


def test_tokenize_bad_k_fails_before_warning(tok: object) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "few pairs" warning would be raised instead
        with pytest.raises(HeadmapsError, match="k must be at least 1"):
            tokenize(op([(w, w) for w in WORDS[:3]]), tok, len(tok), k=0)


def test_tokenize_warns_under_min_pairs(tok: object) -> None:
    pairs = [(w, w) for w in WORDS[: MIN_PAIRS - 1]] + [("zebra", "zebra")] * 5
    with pytest.warns(UserWarning) as caught:
        result = tokenize(op(pairs, name="few"), tok, len(tok))
    assert result.n_pairs == MIN_PAIRS - 1
    (warning,) = caught
    text = str(warning.message)
    assert "'few'" in text
    assert f"only {MIN_PAIRS - 1} of {len(pairs)}" in text


def test_tokenize_no_warning_at_exactly_min_pairs(tok: object) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tokenize(op([(w, w) for w in WORDS[:MIN_PAIRS]]), tok, len(tok)).n_pairs == MIN_PAIRS


def test_tokenize_no_usable_pairs(tok: object) -> None:
    pairs = [("zebra", "giraffe"), ("wab", "giraffe"), ("zebra", "wab"), ("wab", "two words")]
    with pytest.raises(HeadmapsError) as info:
        tokenize(op(pairs, name="animals"), tok, len(tok))
    message = str(info.value)
    assert "'animals'" in message and "no usable pairs" in message and "4 pairs" in message
    assert "\n" not in message


def test_tokenize_builtin_against_tiny_vocab(tok: object) -> None:
    # none of the built-in years are words of the tiny tokenizer
    with pytest.raises(HeadmapsError, match="year_to_following"):
        tokenize(builtin_operations()["year_to_following"], tok, len(tok))


def test_unknown_token_is_not_a_single_token() -> None:
    """A word-level tokenizer maps unknown words to ``<unk>``, one token that is not the word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "Ġcat": 1, "Ġdog": 2}
    inner = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    word_level = PreTrainedTokenizerFast(tokenizer_object=inner, unk_token="<unk>")
    assert word_level.encode(" zebra", add_special_tokens=False) == [0]
    assert single_token(word_level, "zebra") is None
    assert single_token(word_level, "cat") == 1
    with pytest.warns(UserWarning):
        result = tokenize(op([("cat", "dog"), ("zebra", "dog"), ("cat", "lion")]), word_level, 3)
    assert (result.source_ids, result.target_ids, result.dropped) == ((1,), (2,), 2)


def test_tokenize_drops_ids_past_the_model_vocabulary(tok: object) -> None:
    """A tokenizer larger than the model's embedding: its extra tokens cannot be scored."""
    pairs = [(w, w) for w in WORDS]
    ids = [ids_of(tok, w)[0] for w in WORDS]
    cut = sorted(ids)[40]
    result = tokenize(op(pairs), tok, cut)
    assert result.n_pairs == 40
    assert max(result.source_ids) < cut
