"""Offline stand-ins shared by test_operations.py and test_cli.py: a byte-level BPE tokenizer
whose vocabulary holds chosen words as single leading-space tokens, and a tiny Llama.

Any other string (a word without its leading space, a word not chosen, digits) is split
into several byte-level tokens, as a real BPE tokenizer would; it never becomes ``<unk>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIALS = ("<unk>", "<pad>", "<s>", "</s>")


def build_bpe_tokenizer(words: Iterable[str]) -> object:
    """A GPT-2-style tokenizer: the 256 byte symbols, then ``"Ġ" + prefix`` for every prefix of
    every word. ``encode(" " + word)`` is one token exactly when ``word`` is one of ``words``
    (or a prefix of one); ``decode`` gives the text back."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    vocab = {t: i for i, t in enumerate([*SPECIALS, *sorted(pre_tokenizers.ByteLevel.alphabet())])}
    merges: list[tuple[str, str]] = []
    for word in words:
        pieces = byte_level.pre_tokenize_str(" " + word)
        if len(pieces) != 1:  # punctuation or inner spaces: not one pre-token, cannot be one token
            continue
        symbols = pieces[0][0]  # "Ġ" + the word's bytes in byte-level spelling
        prefix = symbols[0]
        for char in symbols[1:]:
            if prefix + char not in vocab:
                vocab[prefix + char] = len(vocab)
                merges.append((prefix, char))
            prefix += char
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def builtin_words(*names: str) -> list[str]:
    """Every source and target word of the named built-in operations, deduplicated, in order."""
    from describer.maps.operations import builtin_operations

    ops = builtin_operations()
    return list(dict.fromkeys(w for name in names for pair in ops[name].pairs for w in pair))


def save_tiny_llama(directory: Path, tokenizer: object, seed: int = 0) -> Path:
    """A random 2-layer Llama (hidden 64, 4 query heads, 2 key/value heads) with ``tokenizer``,
    saved as a transformers checkpoint directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
