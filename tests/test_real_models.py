"""The analyzer on the real models shipped by the model packages (slow: loads real weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from describer.maps import loading as models
from describer.maps.analyzer import Analyzer
from describer.maps.operations import builtin_operations, tokenize
from describer.maps.settings import STORED_SOURCES, AnalysisSettings, SourceChoice, default_settings
from tests._real import real_model

pytestmark = pytest.mark.slow


def test_gemma_shapes_and_identity() -> None:
    loaded = real_model("gemma-3-270m")
    a = loaded.adapter
    assert loaded.family == "gemma3_text"
    assert (a.n_layers, a.n_heads, a.n_kv_heads, a.vocab_size) == (18, 4, 1, 262_144)
    assert loaded.content_hash == models.ALIASES["gemma-3-270m"].sha256


def test_qwen_shapes_and_identity() -> None:
    loaded = real_model("qwen2.5-coder-0.5b-instruct")
    a = loaded.adapter
    assert loaded.family == "qwen2"
    assert (a.n_layers, a.n_heads, a.n_kv_heads, a.d_model) == (24, 14, 2, 896)
    assert loaded.content_hash == models.ALIASES["qwen2.5-coder-0.5b-instruct"].sha256
    assert (
        models.sha256_file(models.ALIASES["qwen2.5-coder-0.5b-instruct"].gguf_path()) == loaded.content_hash
    )


def test_second_load_uses_the_converted_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    real_model("gemma-3-270m")  # converted by now

    def no_conversion(*args: object) -> None:
        raise AssertionError("the GGUF was converted again")

    monkeypatch.setattr(models, "_convert_gguf", no_conversion)
    monkeypatch.setattr(models, "materialise_alias", no_conversion)
    again = models.load_model("gemma-3-270m")
    assert again.adapter.n_layers == 18


def _best_copying(settings: AnalysisSettings, k: int) -> float:
    loaded = real_model("gemma-3-270m")
    analyzer = Analyzer(loaded.adapter, loaded.tokenizer, settings)
    op = tokenize(builtin_operations()["general_copying"], loaded.tokenizer, analyzer.vocab_size, k=k)
    assert op.n_pairs >= 300
    _, (scores,) = analyzer.analyze([op], with_salient=False)
    return max(max(row) for row in scores.scores)


def test_gemma_copying_by_source() -> None:
    """The paper's exact recipe sees no copying head in gemma-3-270m; the default (the
    context-free residual) finds heads that copy at top-1, as the weights-only embed+mlp0 did."""
    assert default_settings("gemma3_text").source == "residual"
    assert _best_copying(SourceChoice(source="paper").settings("gemma3_text"), k=1) < 0.1
    assert _best_copying(SourceChoice(source="embed+mlp0").settings("gemma3_text"), k=1) > 0.3
    assert _best_copying(default_settings("gemma3_text"), k=1) > 0.3


def test_analyze_command_on_gemma(tmp_path) -> None:
    """The README's main job, end to end, on a subset of operations."""
    out = tmp_path / "gemma.json"
    env = dict(os.environ)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "describer.cli",
            "analyze",
            "--operations",
            "country_to_capital,general_copying",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["model"] == "gemma-3-270m"
    settings = result["settings"]
    assert (settings["source"], settings["residual_prefix"]) == ("residual", "<bos>")
    assert settings["mlp_norm"] and settings["attn_norm"] and settings["fold_norms"]
    assert len(result["heads"]) == 72
    assert {(h["layer"], h["head"]) for h in result["heads"]} == {(L, h) for L in range(18) for h in range(4)}
    for head in result["heads"]:
        assert len(head["salient"]) == STORED_SOURCES
        amps = [s["amplification"] for s in head["salient"]]
        assert amps == sorted(amps, reverse=True) and amps[-1] > 0
        for s in head["salient"]:
            assert s["token"].strip() and len(s["mappings"]) == 5
            logits = [m["logit"] for m in s["mappings"]]
            assert logits == sorted(logits, reverse=True)
    ops = result["operations"]
    assert set(ops) == {"country_to_capital", "general_copying"}
    assert ops["general_copying"]["k"] == 3 and ops["country_to_capital"]["k"] == 25
    for op in ops.values():
        assert len(op["scores"]) == 18 and all(len(row) == 4 for row in op["scores"])
        assert all(0 <= v <= 1 for row in op["scores"] + op["suppression"] for v in row)
    # Copying is a real behaviour of this model, and its best copying head shows it in its
    # salient mappings: most of its 15 sources map to themselves (or a case/space variant).
    grid = ops["general_copying"]["scores"]
    best = max(((layer, head) for layer in range(18) for head in range(4)), key=lambda lh: grid[lh[0]][lh[1]])
    assert grid[best[0]][best[1]] > 0.3
    (copier,) = [h for h in result["heads"] if (h["layer"], h["head"]) == best]
    copies = sum(
        s["token"].strip().lower() in {m["token"].strip().lower() for m in s["mappings"]}
        for s in copier["salient"]
    )
    assert copies >= 8, copier
