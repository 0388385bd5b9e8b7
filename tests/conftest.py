"""Shared fixtures."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests._browser"]  # the browser tests' Chromium fixtures

# --- an offline word-level tokenizer ------------------------------------------------------

UNREADABLE_TOKENS = ("<unk>", "<pad>", "<s>", "</s>", "<unused0>", "Ġ", "Ċ", "ĠĠ")
"""Special tokens, an unused ``<…>`` token and blank tokens (space, newline, two spaces), in
byte-level spelling; they come first, so their ids are ``0 … len-1``."""


def letter_words(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct lowercase words (letters only, so a byte-level split keeps them whole)."""
    import random

    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        words["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 6)))] = None
    return list(words)


def build_word_tokenizer(words: list[str]) -> object:
    """A GPT-2-style word-level tokenizer: ``UNREADABLE_TOKENS``, then each word and ``" " + word``.

    ``encode(" cat")`` is the single token ``Ġcat``; decoding gives ``" cat"`` back. Unknown
    words become ``<unk>``. Vocabulary size ``len(UNREADABLE_TOKENS) + 2 * len(words)``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = list(UNREADABLE_TOKENS)
    for word in words:
        vocab += [word, "Ġ" + word]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


WORD_TOKENIZER_WORDS = 1250
"""Words in ``word_tokenizer``: a vocabulary of 2508, over 1024 so the Analyzer streams it in chunks."""


@pytest.fixture(scope="session")
def word_tokenizer() -> object:
    """A 2508-token word-level tokenizer built offline (see ``build_word_tokenizer``)."""
    return build_word_tokenizer(letter_words(WORD_TOKENIZER_WORDS))


@pytest.fixture(autouse=True)
def _isolated_database(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands that write to the default store (``headmaps analyze``) never touch the user's
    real database: each test gets its own SQLite file unless it passes ``--db``."""
    path = tmp_path_factory.mktemp("db") / "headmaps.db"
    monkeypatch.setenv("HEADMAPS_DATABASE_URL", f"sqlite:///{path}")
