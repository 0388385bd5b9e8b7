"""The validation experiments' mechanics (issue 6): hooks, ablation, planted heads, Pearson, CLI.

Tiny random models of every family (built as in test_adapter_fidelity) check that forcing the
last position's attention really yields the source's value vector as the model itself computed
it, and that ablation is exactly zeroing the heads' rows of W_O. A tiny Llama with one planted
head (token a_i -> b_i through its OV circuit) checks the static and dynamic scores end to end.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D
from typer.testing import CliRunner

from describer import cli
from describer.maps.loading import load_model
from describer.maps.operations import builtin_operations, single_token, tokenize
from describer.maps.settings import AnalysisSettings
from evaluation.causal import fewshot_prompts, run_causal
from evaluation.correlation import TEMPLATES, run_correlation, template_ids
from evaluation.hooks import head_contributions, head_hooks, run_captured
from tests._fidelity import FAMILIES, VOCAB, assert_close, build, proj_rows
from tests._real import real_model
from tests.conftest import build_word_tokenizer, letter_words

runner = CliRunner()
SEQ = 7


def _ids(batch: int = 2) -> Tensor:
    return torch.randint(0, VOCAB, (batch, SEQ), generator=torch.Generator().manual_seed(5))


def _model_values(model: nn.Module, fam, adapter) -> tuple[list, list]:  # noqa: ANN001
    """Hooks (independent of evaluation.hooks) keeping each layer's v projection output."""
    outs: list[dict[str, Tensor]] = [{} for _ in range(adapter.n_layers)]
    handles = []
    for L in range(adapter.n_layers):
        for name, module in fam.qkv_modules(fam.block(model, L)).items():

            def keep(mod, args, output, L=L, name=name):  # noqa: ANN001, ANN202
                outs[L][name] = output.detach().clone()

            handles.append(module.register_forward_hook(keep))
    return outs, handles


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request) -> tuple[str, nn.Module]:  # noqa: ANN001
    return request.param, build(request.param)


def test_forced_attention_is_the_source_value(family) -> None:  # noqa: ANN001
    name, model = family
    fam = FAMILIES[name]
    from describer.maps.adapters import adapter_for

    a = adapter_for(model)
    nh, nkv, hd = a.n_heads, a.n_kv_heads, a.head_dim
    ids = _ids()
    source = torch.tensor([2, 4])
    with torch.no_grad():
        plain = model(ids).logits
        with head_hooks(a, source=source) as unforced:
            model(ids)
        outs, handles = _model_values(model, fam, a)
        try:
            with head_hooks(a, source=source, force=True) as cap:
                forced = model(ids).logits
        finally:
            for h in handles:
                h.remove()
    contributions = head_contributions(a, cap, folded=False)
    for L in range(a.n_layers):
        _, _, v = fam.split_qkv(outs[L], nh, nkv, hd)  # the model's own values, [B, T, nkv, hd]
        lw = a.layer(L)
        proj = a.out_proj_module(L)
        for h in range(nh):
            v_p = v[torch.arange(2), source, a.kv_head(h)]
            assert_close(cap.z[L][:, h], v_p, f"{name} forced z L{L} h{h}")
            out_model = cap.z[L][:, h] @ proj_rows(proj, h, hd)
            assert_close(out_model, v_p @ lw.W_O[h], f"{name} forced output L{L} h{h}")
            assert_close(contributions[L][:, h], v_p @ lw.W_O[h], f"{name} contribution L{L} h{h}")
        # What the correlation experiment uses: the unforced run's source values give the same
        # forced outputs (the source precedes the last position, which is all forcing changes).
        assert_close(unforced.forced_z(a, L), cap.z[L], f"{name} forced_z L{L}")
    assert torch.equal(forced[:, :-1], plain[:, :-1])
    assert not torch.allclose(forced[:, -1], plain[:, -1])


def _zero_heads(model: nn.Module, adapter, heads) -> nn.Module:  # noqa: ANN001
    from describer.maps.adapters import adapter_for

    zeroed = copy.deepcopy(model)
    za, hd = adapter_for(zeroed), adapter.head_dim
    with torch.no_grad():
        for L, h in heads:
            proj = za.out_proj_module(L)
            if isinstance(proj, Conv1D):
                proj.weight[h * hd : (h + 1) * hd, :] = 0
            else:
                proj.weight[:, h * hd : (h + 1) * hd] = 0
    return zeroed


def test_ablation_is_zeroing_W_O_rows(family) -> None:  # noqa: ANN001
    name, model = family
    from describer.maps.adapters import adapter_for

    a = adapter_for(model)
    heads = [(0, 1), (1, 0), (a.n_layers - 1, 2)]
    zeroed = _zero_heads(model, a, heads)
    ids = _ids()
    with torch.no_grad():
        with head_hooks(a, ablate=heads, ablate_all_positions=True):
            everywhere = model(ids).logits
        assert_close(everywhere, zeroed(ids).logits, f"{name} ablated everywhere")
        # At the last position only: the prefix runs through the intact model, the last token
        # through the zeroed one, reading the intact prefix's keys and values.
        with head_hooks(a, ablate=heads) as cap:
            last = run_captured(model, ids)
        prefix = model(ids[:, :-1], use_cache=True)
        expected = zeroed(ids[:, -1:], past_key_values=prefix.past_key_values).logits[:, -1]
        plain = model(ids).logits[:, -1]
    assert_close(last, expected, f"{name} ablated at the last position")
    assert not torch.allclose(last, plain)
    for L, h in heads:
        assert torch.all(cap.z[L][:, h] == 0)


def test_stop_after_last_layer_captures_the_same() -> None:
    model = build("llama")
    from describer.maps.adapters import adapter_for

    a = adapter_for(model)
    ids = _ids()
    with torch.no_grad():
        with head_hooks(a) as full:
            assert run_captured(model, ids) is not None
        with head_hooks(a, stop_after_last_layer=True) as cut:
            assert run_captured(model, ids) is None
    for L in range(a.n_layers):
        assert torch.equal(full.z[L], cut.z[L])
    with pytest.raises(ValueError, match="no head"), head_hooks(a, ablate=[(a.n_layers, 0)]):
        pass


# --- Pearson ---------------------------------------------------------------------------------


# --- a planted head ----------------------------------------------------------------------------

PAIRS = builtin_operations()["country_to_capital"].pairs[:10]


@pytest.fixture(scope="module")
def planted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose layer-0 head 0 maps each country a_i to its capital b_i (and only the
    ten planted pairs are single tokens for its tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    words = [w for pair in PAIRS for w in pair] + letter_words(200, seed=3)
    tok = build_word_tokenizer(words)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        initializer_range=0.1,
    )
    model = LlamaForCausalLM(config).eval()
    hd = 16
    with torch.no_grad():
        E, U = model.model.embed_tokens.weight, model.lm_head.weight
        attn = model.model.layers[0].self_attn
        attn.v_proj.weight[:hd] = 0  # key/value head 0 (read by query heads 0 and 1)
        attn.o_proj.weight[:, :hd] = 0  # head 0's rows of W_O
        for i, (src, tgt) in enumerate(PAIRS):
            a, b = single_token(tok, src), single_token(tok, tgt)
            E[a] = 0
            E[a, i] = 5.0  # the country's embedding: direction i
            attn.v_proj.weight[i, i] = 1.0  # value dim i reads direction i
            attn.o_proj.weight[32 + i, i] = 1.0  # and writes direction 32 + i
            U[b, 32 + i] = 10.0  # which the capital's unembedding reads
    directory = tmp_path_factory.mktemp("planted")
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("norms", [False, True])
def test_planted_head_static_and_dynamic(planted_dir: Path, norms: bool) -> None:
    loaded = load_model(str(planted_dir))
    with pytest.warns(UserWarning, match="only 10"):
        op = tokenize(builtin_operations()["country_to_capital"], loaded.tokenizer, loaded.adapter.vocab_size)
    assert op.n_pairs == 10 and op.k == 10
    settings = AnalysisSettings(source="embed", mlp_norm=norms, attn_norm=norms, fold_norms=norms)
    result, (static,), (dyn,) = run_correlation(loaded, [op], settings, max_pairs=None, batch_size=7)
    assert static.scores[0][0] == 1.0
    assert len(dyn.without_context) == len(TEMPLATES)  # [template][layer][head]
    assert all(grid[0][0] == 1.0 for grid in dyn.without_context)
    assert static.suppression[0][0] == 0.0
    assert all(grid[0][0] == 0.0 for grid in dyn.suppression_without_context)
    flat = [s for row in static.scores for s in row]
    assert sum(s == 1.0 for s in flat) == 1  # only the planted head implements it fully
    (row,) = result.rows
    assert row.n_pairs == 10 and row.max_static == 1.0
    assert row.r_without_context is not None and row.r_without_context > 0.9
    # the templates put X where template_ids says, and every prompt has one length per template
    ids, pos = template_ids(loaded.tokenizer, TEMPLATES[1], op.source_ids[0])
    assert ids[pos] == op.source_ids[0]


def test_cli_correlation_json_and_csv(planted_dir: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "c.csv"
    result = runner.invoke(
        cli.app,
        [
            "evaluate",
            "correlation",
            str(planted_dir),
            "--operations",
            "country_to_capital,general_copying",
            "--source",
            "embed",
            "--json",
            "-o",
            str(csv_path),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert {"model", "rows", "median_r_without_context", "median_r_with_context"} <= set(payload)
    assert {"median_ceiling_with_context", "median_within_layer_r_with_context"} <= set(payload)
    (row,) = payload["rows"]  # general_copying has no usable pair here: skipped with a warning
    assert set(row) == {
        "operation",
        "category",
        "n_pairs",
        "max_static",
        "r_without_context",
        "r_with_context",
        "suppression_r_without_context",
        "suppression_r_with_context",
        "r_without_context_averaged",
        "r_with_context_averaged",
        "ceiling_without_context",
        "ceiling_with_context",
        "within_layer_r_without_context",
        "within_layer_r_with_context",
    }
    assert row["operation"] == "country_to_capital" and row["n_pairs"] == 10
    assert payload["median_r_without_context"] == row["r_without_context"]
    assert row["r_without_context_averaged"] is not None
    # planted head: static 1, suppression 0 everywhere for it -> suppression r may be null
    assert csv_path.read_text().splitlines()[0].startswith("category,operation,n_pairs")
    # The table is recorded in the store as a finished evaluate run, which the report shows.
    from evaluation.web.report import latest_correlation
    from store import open_store

    with open_store() as store:
        run = latest_correlation(store, payload["model"])
        assert run is not None and run.settings["experiment"] == "correlation"
        assert run.counts["rows"] == payload["rows"]
        assert run.counts["median_r_with_context"] == payload["median_r_with_context"]
    bad = runner.invoke(cli.app, ["evaluate", "correlation", str(planted_dir), "--operations", "nope"])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_causal_planted(planted_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(str(planted_dir))
    tok = loaded.tokenizer
    with pytest.warns(UserWarning):
        op = tokenize(builtin_operations()["country_to_capital"], tok, loaded.adapter.vocab_size)
    ids, targets = fewshot_prompts(tok, op, n_shots=2, max_prompts=None)
    assert ids.shape[0] == 10 and set(targets.tolist()) == set(op.target_ids)
    text = tok.decode(ids[0])
    assert text.count("\n") == 2  # " Ireland: Dublin\n Spain: Madrid\n Britain:" (":" is <unk> here)
    assert ids[0, -1].item() == tok.encode(":", add_special_tokens=False)[-1]
    scores = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0]]
    result = run_causal(loaded, op, op, scores, max_heads=2, seeds=2, n_shots=2, max_prompts=None)
    assert [p.m for p in result.points] == [0, 1, 2]
    assert result.points[1].heads == ["0.0"] and result.points[2].heads == ["0.0", "1.1"]
    first = result.points[0]
    assert first.accuracy_top == first.accuracy_random == first.accuracy_control
    assert all(0 <= p.accuracy_top <= 1 for p in result.points)
    out = runner.invoke(
        cli.app,
        [
            "evaluate",
            "causal",
            str(planted_dir),
            "--operation",
            "country_to_capital",
            "--control",
            "country_to_capital",
        ],
    )
    assert out.exit_code == 2 and "error:" in out.output


@pytest.mark.slow
def test_real_gemma_hooks_and_correlation() -> None:
    loaded = real_model("gemma-3-270m")
    a, model = loaded.adapter, loaded.model
    ids = loaded.tokenizer("The story of Paris contains", return_tensors="pt").input_ids
    source = torch.tensor([4])
    heads = [(0, 1), (5, 2), (a.n_layers - 1, 3)]
    with torch.no_grad():
        with head_hooks(a, source=source, force=True) as cap:
            model(ids)
        with head_hooks(a, ablate=heads, ablate_all_positions=True):
            ablated = model(ids).logits
        expected = _zero_heads(model, a, heads)(ids).logits
    assert_close(ablated, expected, "gemma ablation")
    L = 5
    lw = a.layer(L)
    with torch.no_grad():
        x = model(ids, output_hidden_states=True).hidden_states[L]
    v = lw.attn_norm(x[0, 4]) @ lw.W_V[a.kv_head(2)]
    assert_close(cap.z[L][0, 2], v, "gemma forced z")
    op = tokenize(builtin_operations()["country_to_capital"], loaded.tokenizer, a.vocab_size)
    from describer.maps.settings import default_settings

    result, _, _ = run_correlation(loaded, [op], default_settings(loaded.family), max_pairs=8)
    (row,) = result.rows
    assert row.n_pairs == 8 and row.r_without_context is not None and row.r_without_context > 0


def test_cli_correlation_on_a_directory_of_pairs_files(planted_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "datasets"
    data.mkdir()
    (data / "capitals.json").write_text(json.dumps([list(p) for p in PAIRS]), encoding="utf-8")
    args = ["evaluate", "correlation", str(planted_dir), "--source", "embed", "--json", "--no-store"]
    result = runner.invoke(cli.app, [*args, "--pairs", str(data), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout.strip().splitlines()[-1])["rows"]
    assert (row["operation"], row["n_pairs"]) == ("capitals", 10) and row["r_without_context"] > 0.9
    empty = tmp_path / "empty"
    empty.mkdir()
    (data / "unusable.json").write_text(json.dumps([["zzqx", "qqzz"]] * 3), encoding="utf-8")
    for bad, fragment in (
        (empty, "no .json or .csv pairs files"),
        (data / "unusable.json", "no usable pairs"),
    ):
        failed = runner.invoke(cli.app, [*args, "--pairs", str(bad), "--device", "cpu"])
        assert failed.exit_code == 2, failed.output
        assert fragment in failed.stderr and "Traceback" not in failed.output
