"""The static QK view (describer/maps/qk.py, qk_view.py, qk_check.py) and ``headmaps qk``.

The static score is checked against each family's own forward pass: for the representations
the model really had (the residual entering the layer), the score of a query at position m and
a key at position n with the rotation taken at offset m − n must be the model's attention logit.
Within a row the log-probabilities differ from the logits by one constant, so both sides are
compared row-centred. Offset 0 (the diagonal) is where the rotation cancels: there the view's
``rotary="none"`` handling is exact.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from describer.maps.loading import LoadedModel, load_model
from describer.maps.qk import head_qk
from describer.maps.qk_check import masked_spearman
from describer.maps.qk_view import family_note, make_representation, qk_view, resolve_queries
from tests._cli import (  # noqa: F401  (fixtures are used by name)
    assert_ok,
    assert_user_error,
    cache_dir,
    invoke,
    tiny_dir,
    tokenizer,
)
from tests._fidelity import FAMILIES, Run, assert_close, run

VARIANTS = {
    # The rotary's attention scaling (YaRN: cos and sin carry a factor ≠ 1, q·k carries it twice).
    "llama-yarn": dict(
        rope_parameters={
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 16,
            "rope_theta": 10000.0,
        }
    ),
    "phi3-partial": dict(partial_rotary_factor=0.5),
    # A global layer between local ones: Gemma 3's per-layer-type rotary bases.
    "gemma3_text-global": dict(layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
}
NAMES = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "gpt_neox",
    "gpt2",
    "phi3",
    *VARIANTS,
]


@pytest.fixture(scope="module", params=NAMES)
def r(request: pytest.FixtureRequest) -> Run:
    name = request.param
    if name in VARIANTS:
        base = FAMILIES[name.split("-")[0]]
        FAMILIES[name] = dataclasses.replace(base, config={**base.config, **VARIANTS[name]})
        try:
            return run(name)
        finally:
            del FAMILIES[name]
    return run(name)


def _static_matrix(r: Run, L: int, h: int) -> torch.Tensor:
    """The static score of every causal (m, n) pair of each sequence, ``[B, T, T]``, each with
    the rotation at offset m − n."""
    xs = r.residual[L]
    B, T = xs.shape[:2]
    S = torch.full((B, T, T), float("nan"))
    for d in range(T):
        qk = head_qk(r.adapter, L, h, offsets=[d])
        s = torch.einsum("btd,bsd->bts", qk.queries(xs), qk.keys(xs))
        if qk.softcap:
            s = qk.softcap * torch.tanh(s / qk.softcap)
        m = torch.arange(d, T)
        S[:, m, m - d] = s[:, m, m - d]
    return S


def test_static_score_is_the_models_logit(r: Run) -> None:
    a = r.adapter
    got, expected = [], []
    for L in range(a.n_layers):
        probs = r.out.attentions[L]
        for h in range(a.n_heads):
            S = _static_matrix(r, L, h)
            for b in range(probs.shape[0]):
                P = probs[b, h]
                for m in range(1, S.shape[1]):
                    keep = P[m] > 0  # causal and sliding-window masks
                    s, lp = S[b, m][keep], P[m][keep].log()
                    assert not torch.isnan(s).any()
                    got.append(s - s.mean())
                    expected.append(lp - lp.mean())
    assert_close(torch.cat(got), torch.cat(expected), "row-centred logits")


def test_offset_zero_is_no_rotation(r: Run) -> None:
    """The diagonal (a token attending to itself) is exact with ``rotary="none"``; the mean
    rotation is the mean of the exact offsets' scores (the score is linear in the key operator)."""
    a = r.adapter
    xs = r.residual[1][0]
    for h in range(a.n_heads):
        none = head_qk(a, 1, h, "none")
        S = _static_matrix(r, 1, h)[0]
        diag = none.scores(none.queries(xs), none.keys(xs)).diagonal()
        assert_close(diag, S.diagonal(), f"offset 0, head {h}")
        offsets = [1, 2, 5]
        mean = head_qk(a, 1, h, "mean", offsets=offsets)
        q = mean.queries(xs)
        singles = [head_qk(a, 1, h, offsets=[d]) for d in offsets]
        expected = torch.stack([(q @ s.keys(xs).T) for s in singles]).mean(0)
        assert_close(q @ mean.keys(xs).T, expected, f"mean rotation, head {h}")
        assert ("averaged" in mean.rotary) == (a.qk_extras(1).rotary is not None)


def test_masked_spearman_matches_a_plain_rank_correlation() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 5, 9, generator=gen), torch.randn(3, 5, 9, generator=gen)
    valid = torch.arange(9)[None, :] < torch.tensor([3, 5, 6, 8, 9])[:, None]
    got = masked_spearman(x, y, valid)
    for i in range(3):
        for j, n in enumerate([3, 5, 6, 8, 9]):
            rx = x[i, j, :n].argsort().argsort().double()
            ry = y[i, j, :n].argsort().argsort().double()
            expected = torch.corrcoef(torch.stack([rx, ry]))[0, 1]
            assert abs(float(got[i, j] - expected)) < 1e-9


# --- the view over the vocabulary ---------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tiny_dir: Path) -> Path:  # noqa: F811  (the fixture imported from tests/_cli.py)
    return tiny_dir


@pytest.fixture(scope="module")
def tiny(model_dir: Path) -> LoadedModel:
    return load_model(str(model_dir))


def _brute_force(rep, layer: int, head: int, query_ids: list[int], top: int) -> list[list[int]]:  # noqa: ANN001
    """Each query's top keys over every readable token, with exact rows and no streaming."""
    qk = head_qk(rep.analyzer.adapter, layer, head)
    ids = rep.mask.nonzero().squeeze(1)
    s = qk.scores(qk.queries(rep.exact(layer, torch.tensor(query_ids))), qk.keys(rep.exact(layer, ids)))
    return ids[s.topk(top, dim=1).indices].tolist()


@pytest.mark.parametrize("source", ["embed", "residual", "residual-sweep"])
def test_view_streams_to_the_exact_top_keys(tiny: LoadedModel, source: str) -> None:
    sweep = source == "residual-sweep"
    rep = make_representation(tiny.adapter, tiny.tokenizer, source.removesuffix("-sweep"), "cpu", sweep=sweep)
    assert rep.approximate == (source == "residual") and (rep.maps is None) == (source != "residual")
    # With as many candidates as tokens the residual view is exact too (the sweep always is);
    # chunks of 300 stream the vocabulary.
    rows, average, qk = qk_view(rep, 1, 2, n_queries=3, top_k=5, candidates=10_000, chunk=300)
    assert len(rows) == 3 and average.token_id is None and len(average.keys) == 5
    assert all(rep.mask[q.token_id] for q in rows)
    assert [q.spread for q in rows] == sorted((q.spread for q in rows), reverse=True)
    expected = _brute_force(rep, 1, 2, [q.token_id for q in rows], 5)
    assert [[k.token_id for k in q.keys] for q in rows] == expected
    for q in rows:
        assert [k.score for k in q.keys] == sorted((k.score for k in q.keys), reverse=True)
        assert all(k.z > 0 for k in q.keys)


def test_view_with_given_queries_and_few_candidates(tiny: LoadedModel) -> None:
    rep = make_representation(tiny.adapter, tiny.tokenizer, "residual", "cpu")
    ids = resolve_queries(tiny.tokenizer, [" mother", " father"])
    rows, _, _ = qk_view(rep, 0, 1, query_ids=ids, top_k=4, candidates=32)
    assert [q.token for q in rows] == [" mother", " father"]
    exact = _brute_force(rep, 0, 1, ids, 4)
    # Layer 0 reads the embedding, which the linear proxy fits exactly: the candidates are right.
    assert [[k.token_id for k in q.keys] for q in rows] == exact


# --- the command --------------------------------------------------------------------------------


def test_cli_json(model_dir: Path) -> None:
    result = invoke(
        "qk",
        model_dir,
        "1.3",
        "--top",
        "3",
        "--queries",
        "2",
        "--json",
        "--device",
        "cpu",
        "--source",
        "embed",
    )
    assert_ok(result)
    view = json.loads(result.stdout)
    assert (view["layer"], view["head"], view["family"]) == (1, 3, "llama")
    assert len(view["queries"]) == 2 and all(len(q["keys"]) == 3 for q in view["queries"])
    assert "averaged over query−key offsets 1…64" in view["rotary"]
    assert view["note"].startswith("not measured for llama")
    assert set(view["agreement"]) == {"static", "position", "shuffled", "rows", "verdict"}


def test_cli_table_states_rotary_and_caveat(model_dir: Path) -> None:
    result = invoke(
        "qk", model_dir, "0.0", "--query", " mother", "--top", "2", "--rotary", "none", "--no-check"
    )
    assert_ok(result)
    text = " ".join(result.stdout.split())
    assert "rotary: rotary on all 16 dims, taken at offset 0" in text
    assert "caveat: not measured for llama" in text
    assert "' mother'" in text and "(average query)" in text
    assert "this head:" not in text


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("1.9",), ("head 9 out of range", "0…3")),
        (("7.0",), ("layer 7 out of range", "0…1")),
        (("one.two",), ("'one.two' is not a head",)),
        (("1.0", "--query", "mother father"), ("is not one token",)),
        (("1.0", "--source", "paper"), ("unknown --source 'paper'",)),
        (("1.0", "--rotary", "exact"), ("unknown --rotary 'exact'",)),
    ],
)
def test_cli_bad_input(model_dir: Path, args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    assert_user_error(invoke("qk", model_dir, *args, "--device", "cpu"), *fragments, preamble=True)


def test_cli_unknown_model() -> None:
    assert_user_error(invoke("qk", "no-such-model", "1.0"), "unknown model", "'no-such-model'")


def test_family_note_states_the_measured_verdict() -> None:
    assert family_note("gemma3_text", "residual").startswith("weak: on gemma-3-270m")
    assert "0.32 with residual/mean" in family_note("gemma3_text", "residual")
    assert family_note("gemma3_text", "embed").startswith("uninformative:")
    assert family_note("qwen2", "residual", "none").startswith("weak: on qwen2.5-coder-0.5b-instruct")
    assert family_note("gpt2", "residual").startswith("not measured for gpt2")
