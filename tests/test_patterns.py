"""Attention-pattern scores: each detector reads 1 on a head planted with its pattern and stays
low on every other head, in every supported family; the inputs are what the docs say; the model
is left as it was found."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import Tensor, nn

from describer.errors import HeadmapsError
from describer.maps.adapters import adapter_for
from describer.maps.attention import pattern_scores, reduce_pattern, sample_sequences
from describer.maps.patterns import PATTERNS, PatternSettings, check_pattern, notable_patterns
from tests._fidelity import FAMILIES

SETTINGS = PatternSettings(length=20, batch=4, chunk=3)
"""Short enough for the tiny models' 64 positions; ``chunk`` 3 splits the batch unevenly."""
PLANTS = {"previous_token": (0, 1), "induction": (1, 2), "duplicate_token": (2, 3), "first_token": (2, 0)}
"""Where each pattern is planted: (layer, head)."""


def planted(ids: Tensor, pattern: str) -> Tensor:
    """``[B, T, T]`` one-hot attention of a head that does exactly ``pattern`` on ``ids`` (the
    position itself when the pattern has no target there), from the token ids alone."""
    B, T = ids.shape
    out = torch.zeros(B, T, T)
    for b in range(B):
        row = ids[b].tolist()
        for i in range(T):
            target = 0 if pattern == "first_token" else i
            earlier = [j for j in range(1, i) if row[j] == row[i]]
            if pattern == "previous_token" and i > 0:
                target = i - 1
            elif pattern == "duplicate_token" and earlier:
                target = earlier[-1]
            elif pattern == "induction" and earlier:
                target = earlier[-1] + 1
            out[b, i, target] = 1.0
    return out


def tiny(name: str) -> nn.Module:
    fam = FAMILIES[name]
    config = dict(fam.config)
    if "sliding_window" in config:
        config["sliding_window"] = 64  # a 4-token window would make every random head look back 1-3
    torch.manual_seed(0)
    cfg = getattr(transformers, fam.config_cls)(**config)
    return transformers.AutoModelForCausalLM.from_config(cfg).float().eval()


class Tok:
    """What ``sample_sequences`` asks of a tokenizer; ids 0-2 are special, 3 is blank."""

    all_special_ids = [0, 1, 2]
    bos_token_id, bos_token = 1, "<s>"

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def decode(self, ids: list[int]) -> str:
        return " " if ids[0] == 3 else f"w{ids[0]}"


def plant(model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks that replace the planted heads' attention probabilities with ``planted`` ones
    (registered before the analyzer's, so it reads the replaced ones)."""
    adapter = adapter_for(model)
    seen: dict[str, Tensor] = {}

    def keep_ids(module: nn.Module, args: tuple, kwargs: dict) -> None:
        seen["ids"] = kwargs["input_ids"]

    def replace(layer: int):  # noqa: ANN202
        def hook(module: nn.Module, args: object, output: tuple) -> tuple:
            weights = output[1].clone()
            for pattern, (L, h) in PLANTS.items():
                if layer == L:
                    weights[:, h] = planted(seen["ids"], pattern)
            return (output[0], weights, *output[2:])

        return hook

    handles = [model.base_model.register_forward_pre_hook(keep_ids, with_kwargs=True)]
    for layer in range(adapter.n_layers):
        handles.append(adapter.attention_module(layer).register_forward_hook(replace(layer)))
    return handles


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request) -> str:  # noqa: ANN001
    return request.param


def test_each_detector_reads_its_planted_head_in_every_family(family: str) -> None:
    model = tiny(family)
    adapter = adapter_for(model)
    before = model.config._attn_implementation
    handles = plant(model)
    try:
        result = pattern_scores(adapter, Tok(VOCAB_FOR_TESTS), SETTINGS)
    finally:
        for h in handles:
            h.remove()
    assert model.config._attn_implementation == before  # the eager switch is undone
    assert result.settings["attention"] == "eager" and result.settings["length"] == SETTINGS.length
    for pattern, (L, h) in PLANTS.items():
        grid = result.scores[pattern]
        assert len(grid) == adapter.n_layers and all(len(row) == adapter.n_heads for row in grid)
        assert grid[L][h] == pytest.approx(1.0, abs=1e-5), f"{family}: {pattern} at {L}.{h}"
        others = [
            v
            for layer, row in enumerate(grid)
            for head, v in enumerate(row)
            if (layer, head) not in PLANTS.values()
        ]
        assert max(others) < 0.25, f"{family}: {pattern} reads {max(others):.2f} on an unplanted head"
        assert result.top_heads(pattern, 1)[0] == {"layer": L, "head": h, "score": grid[L][h]}
    # One-hot heads have no entropy; the previous-token head looks back exactly one position.
    assert result.scores["entropy"][0][1] == pytest.approx(0.0, abs=1e-5)
    assert result.scores["distance"][0][1] == pytest.approx(1.0, abs=1e-5)
    # The sink head looks back i positions from position i: the mean over 1..L.
    assert result.scores["distance"][2][0] == pytest.approx((SETTINGS.length + 1) / 2, abs=1e-4)
    # Unplanted random heads spread their attention: entropy well above zero.
    assert result.scores["entropy"][1][0] > 0.5


VOCAB_FOR_TESTS = 257
"""The tiny models' vocabulary (``tests._fidelity.VOCAB``)."""


def test_the_inputs_are_a_prefix_and_a_repeated_run_of_distinct_readable_tokens() -> None:
    ids = sample_sequences(Tok(VOCAB_FOR_TESTS), VOCAB_FOR_TESTS, SETTINGS)
    L = SETTINGS.length
    assert ids.shape == (SETTINGS.batch, 1 + 2 * L)
    assert (ids[:, 0] == Tok.bos_token_id).all()
    assert torch.equal(ids[:, 1 : L + 1], ids[:, L + 1 :])
    for row in ids[:, 1 : L + 1].tolist():
        assert len(set(row)) == L and min(row) > 3  # distinct, no special or blank token
    assert torch.equal(ids, sample_sequences(Tok(VOCAB_FOR_TESTS), VOCAB_FOR_TESTS, SETTINGS))
    other = sample_sequences(Tok(VOCAB_FOR_TESTS), VOCAB_FOR_TESTS, SETTINGS.model_copy(update={"seed": 1}))
    assert not torch.equal(ids, other)


def test_too_few_readable_tokens_is_one_clear_error() -> None:
    with pytest.raises(HeadmapsError, match="too few readable tokens"):
        sample_sequences(Tok(12), 12, SETTINGS)


def test_reduce_pattern_on_uniform_attention_matches_the_definitions() -> None:
    L, T = 5, 11
    causal = torch.tril(torch.ones(T, T))
    attn = (causal / causal.sum(-1, keepdim=True))[None, None]  # one row, one head
    got = {k: float(v[0]) for k, v in reduce_pattern(attn, L).items()}
    assert got["previous_token"] == pytest.approx(sum(1 / (i + 1) for i in range(2, L + 1)) / (L - 1))
    assert got["first_token"] == pytest.approx(sum(1 / (i + 1) for i in range(1, L + 1)) / L)
    assert got["induction"] == pytest.approx(sum(1 / (i + 1) for i in range(L + 1, 2 * L + 1)) / L)
    assert got["entropy"] == pytest.approx(sum(torch.log(torch.tensor(i + 1.0)) for i in range(1, L + 1)) / L)
    assert got["distance"] == pytest.approx(sum(i / 2 for i in range(1, L + 1)) / L)


def test_the_settings_key_ignores_the_chunk_size_only() -> None:
    base = PatternSettings()
    assert base.key() == PatternSettings(chunk=2).key()
    assert base.key() != PatternSettings(length=40).key() != PatternSettings(seed=3).key()


def test_unknown_pattern_names_the_valid_ones() -> None:
    with pytest.raises(HeadmapsError) as err:
        check_pattern("inductoin")
    assert all(name in str(err.value) for name in PATTERNS)


def test_notable_patterns_keep_those_over_their_threshold_strongest_first() -> None:
    scores = {
        "induction": 0.9,
        "previous_token": 0.5,
        "duplicate_token": 0.1,
        "entropy": 3.0,
        "first_token": 0.2,
    }
    assert notable_patterns(scores) == [("induction", 0.9), ("previous_token", 0.5)]


def test_an_in_context_pattern_comes_before_a_stronger_sink() -> None:
    # gemma's head 5.1: it rests on the first token until there is something to induce from.
    assert notable_patterns({"first_token": 0.94, "induction": 0.87}) == [
        ("induction", 0.87),
        ("first_token", 0.94),
    ]
