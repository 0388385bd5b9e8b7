"""End-to-end tests of the ``headmaps`` command line on a tiny random Llama saved as a local
model directory: ``models``, ``score``, ``analyze`` in-process, and the installed console script
in a subprocess to check real exit codes and stderr."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from describer import cli
from describer.maps.adapters import supported_families
from describer.maps.loading import ALIASES
from tests._cli import (  # noqa: F401  (fixtures are used by name)
    COPYING_PAIRS,
    N_HEADS,
    N_LAYERS,
    WORDS,
    assert_ok,
    assert_user_error,
    cache_dir,
    check_grid,
    invoke,
    out_dir,
    score_json,
    shifted_pairs,
    tiny_dir,
    tokenizer,
    write_pairs_json,
)

# --- models --------------------------------------------------------------------------------------


def test_models_lists_aliases_and_families() -> None:
    result = invoke("models")
    assert_ok(result)
    assert len(ALIASES) == 2
    for name, alias in ALIASES.items():
        assert name in result.stdout
        assert f"pip install {alias.pip}" in result.stdout  # whole, not cut by the table width
    assert "gemma-3-270m (default)" in result.stdout
    families = supported_families()
    assert {"llama", "qwen2", "gemma3_text", "gpt2"} <= set(families)
    flat = " ".join(result.stdout.split())
    assert ", ".join(families) in flat


@pytest.mark.parametrize("argv", [["-m", "describer.cli"], ["-c", "from describer.cli import main; main()"]])
def test_every_command_group_registered(argv: list[str]) -> None:
    """Run as a module or through the entry point, the CLI has every command, not a partial import."""
    proc = subprocess.run(
        [sys.executable, *argv, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    commands = set(typer.main.get_command(cli.app).commands)  # type: ignore[attr-defined]
    assert {
        "analyze",
        "score",
        "describe",
        "show",
        "serve",
        "search",
        "rate",
        "report",
        "db",
        "evaluate",
    } <= commands
    for name in commands:
        assert f" {name} " in proc.stdout, name


# --- score ----------------------------------------------------------------------------------------


def test_score_operation_json(tiny_dir: Path) -> None:
    payload = score_json(tiny_dir, "--operation", "general_copying")
    assert set(payload) == {"model", "operation", "k", "n_pairs", "scores", "suppression", "top_heads"}
    assert payload["model"] == "tiny-llama"
    assert payload["operation"] == "general_copying"
    assert payload["k"] == 1  # copying, small vocabulary
    assert payload["n_pairs"] == COPYING_PAIRS
    check_grid(payload["scores"], payload["n_pairs"])
    check_grid(payload["suppression"], payload["n_pairs"])
    assert len(payload["top_heads"]) == min(10, N_LAYERS * N_HEADS)


def test_score_top_heads_sorted_and_consistent(tiny_dir: Path) -> None:
    # a large k gives a random model scores well away from 0, so the order means something
    payload = score_json(tiny_dir, "--operation", "general_copying", "--k", "300", "--top", "5")
    assert payload["k"] == 300
    scores = payload["scores"]
    top = payload["top_heads"]
    assert len(top) == 5
    assert all(set(t) == {"layer", "head", "score"} for t in top)
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
    assert all(t["score"] == scores[t["layer"]][t["head"]] for t in top)
    flat = sorted((v for row in scores for v in row), reverse=True)
    assert [t["score"] for t in top] == flat[:5]
    assert len({(t["layer"], t["head"]) for t in top}) == 5
    assert max(flat) > 0


def test_score_table_output(tiny_dir: Path) -> None:
    result = invoke("score", tiny_dir, "--operation", "general_copying", "--device", "cpu")
    assert_ok(result)
    assert "Top heads:" in result.stdout
    assert "h3" in result.stdout and "layer" in result.stdout
    assert not result.stdout.lstrip().startswith("{")


def test_score_pairs_json_with_k(tiny_dir: Path, tmp_path: Path) -> None:
    path = write_pairs_json(tmp_path / "next_word.json", shifted_pairs(40))
    payload = score_json(tiny_dir, "--pairs", path, "--k", "2")
    assert payload["operation"] == "next_word"
    assert payload["k"] == 2
    assert payload["n_pairs"] == 40
    check_grid(payload["scores"], 40)


def test_score_pairs_default_k_is_not_copying(tiny_dir: Path, tmp_path: Path) -> None:
    path = write_pairs_json(tmp_path / "same.json", [(w, w) for w in WORDS[:40]])
    assert score_json(tiny_dir, "--pairs", path)["k"] == 10


@pytest.mark.parametrize("header", ["", "source,target\n"])
def test_score_pairs_csv(tiny_dir: Path, tmp_path: Path, header: str) -> None:
    rows = "".join(f"{s},{t}\n" for s, t in shifted_pairs(35))
    path = tmp_path / "words.csv"
    path.write_text(header + rows, encoding="utf-8")
    payload = score_json(tiny_dir, "--pairs", path, "--k", "2")
    assert (payload["operation"], payload["k"], payload["n_pairs"]) == ("words", 2, 35)


def test_score_k_changes_the_scores(tiny_dir: Path, tmp_path: Path) -> None:
    path = write_pairs_json(tmp_path / "p.json", shifted_pairs(60))
    low = score_json(tiny_dir, "--pairs", path, "--k", "1")["scores"]
    high = score_json(tiny_dir, "--pairs", path, "--k", "1000")["scores"]
    assert all(h >= lo for hr, lr in zip(high, low, strict=True) for h, lo in zip(hr, lr, strict=True))
    assert sum(map(sum, high)) > sum(map(sum, low))


def test_score_few_usable_pairs_warns(tiny_dir: Path, tmp_path: Path) -> None:
    pairs = shifted_pairs(10) + [("1999", "2000"), ("zzyzx", WORDS[0]), ("two words", WORDS[1])]
    path = write_pairs_json(tmp_path / "few.json", pairs)
    result = invoke("score", tiny_dir, "--pairs", path, "--json", "--device", "cpu")
    assert_ok(result)
    assert json.loads(result.stdout)["n_pairs"] == 10
    assert "warning:" in result.stderr and "only 10 of 13 pairs" in result.stderr


# --- analyze ----------------------------------------------------------------------------------------


def test_analyze_json(tiny_dir: Path, out_dir: Path) -> None:
    out = out_dir / "tiny.json"
    result = invoke(
        "analyze",
        tiny_dir,
        "--json",
        out,
        "--operations",
        "general_copying",
        "--top-tokens",
        "3",
        "--top-mappings",
        "2",
        "--device",
        "cpu",
    )
    assert_ok(result)
    assert f"{N_LAYERS * N_HEADS} heads analysed" in result.stdout
    assert os.listdir(out_dir) == ["tiny.json"]  # no temporary file left beside it
    data = json.loads(out.read_text(encoding="utf-8"))
    assert set(data) == {"model", "settings", "heads", "operations", "skipped_operations", "patterns"}
    assert data["model"] == "tiny-llama" and data["skipped_operations"] == []
    induction = data["patterns"]["scores"]["induction"]
    assert len(induction) == N_LAYERS and all(len(row) == N_HEADS for row in induction)
    assert all(0.0 <= v <= 1.0 for row in induction for v in row)
    settings = data["settings"]
    assert settings["top_tokens"] == 3 and settings["top_mappings"] == 2
    assert settings["family"] == "llama" and settings["device"] == "cpu"

    heads = data["heads"]
    assert [(h["layer"], h["head"]) for h in heads] == [
        (layer, head) for layer in range(N_LAYERS) for head in range(N_HEADS)
    ]
    for head in heads:
        salient = head["salient"]
        assert len(salient) == 3
        amps = [s["amplification"] for s in salient]
        assert amps == sorted(amps, reverse=True) and all(a > 0 for a in amps)
        for s in salient:
            assert isinstance(s["token"], str) and s["token"].strip()
            assert len(s["mappings"]) == 2
            logits = [m["logit"] for m in s["mappings"]]
            assert logits == sorted(logits, reverse=True)
            assert all(isinstance(m["token"], str) for m in s["mappings"])

    assert set(data["operations"]) == {"general_copying"}
    scores = data["operations"]["general_copying"]
    assert scores["k"] == 1 and scores["n_pairs"] == COPYING_PAIRS
    check_grid(scores["scores"], COPYING_PAIRS)
    check_grid(scores["suppression"], COPYING_PAIRS)


def test_analyze_json_file_mode_follows_umask(tiny_dir: Path, out_dir: Path) -> None:
    out = out_dir / "mode.json"
    old = os.umask(0o022)
    try:
        result = invoke(
            "analyze", tiny_dir, "--json", out, "--operations", "general_copying", "--device", "cpu"
        )
    finally:
        os.umask(old)
    assert_ok(result)
    assert out.stat().st_mode & 0o777 == 0o644


def test_analyze_matches_score(tiny_dir: Path, out_dir: Path) -> None:
    """Both commands score an operation the same way, and --k overrides every operation."""
    out = out_dir / "k.json"
    result = invoke(
        "analyze", tiny_dir, "--json", out, "--operations", "general_copying", "--k", "50", "--device", "cpu"
    )
    assert_ok(result)
    analysed = json.loads(out.read_text())["operations"]["general_copying"]
    scored = score_json(tiny_dir, "--operation", "general_copying", "--k", "50")
    assert analysed["k"] == scored["k"] == 50
    assert analysed["scores"] == scored["scores"]
    assert analysed["suppression"] == scored["suppression"]


def test_analyze_skips_operation_without_usable_pairs(tiny_dir: Path, out_dir: Path) -> None:
    out = out_dir / "skip.json"
    result = invoke(
        "analyze",
        tiny_dir,
        "--json",
        out,
        "--operations",
        "general_copying,year_to_following",
        "--top-tokens",
        "1",
        "--device",
        "cpu",
    )
    assert_ok(result)
    assert "warning:" in result.stderr and "year_to_following" in result.stderr
    written = json.loads(out.read_text())
    assert set(written["operations"]) == {"general_copying"}
    assert written["skipped_operations"] == ["year_to_following"]


def test_analyze_without_json_writes_nothing(tiny_dir: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    result = invoke("analyze", tiny_dir, "--operations", "general_copying", "--top-tokens", "1")
    assert_ok(result)
    assert "general_copying" in result.stdout
    assert sorted(os.listdir(tmp_path)) == before


# --- the real console script ----------------------------------------------------------------------


def headmaps_exe() -> str:
    beside = Path(sys.executable).parent / "headmaps"
    found = str(beside) if beside.exists() else shutil.which("headmaps")
    assert found, "the headmaps console script is not installed"
    return found


def run_headmaps(*args: object, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HEADMAPS_PROGRESS"}
    env.update(HEADMAPS_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", COLUMNS="80")
    return subprocess.run(
        [headmaps_exe(), *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_console_script_user_error(tmp_path: Path, cache_dir: Path) -> None:
    pairs = tmp_path / "pairs.json"
    pairs.write_text('{"not": ["a", 1]}', encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    proc = run_headmaps("score", tmp_path / "missing-model", "--pairs", pairs, cache=cache_dir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    # the pairs file is read before the model, and its message keeps its brackets
    assert "expected a JSON list of [source, target] string pairs" in lines[0]
    assert "\x1b[" not in proc.stderr  # no colour codes when stderr is not a terminal


def test_console_script_score_json(tiny_dir: Path, cache_dir: Path) -> None:
    proc = run_headmaps(
        "score", tiny_dir, "--operation", "general_copying", "--json", "--k", "2", cache=cache_dir
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""  # no progress bars when stderr is not a terminal
    payload = json.loads(proc.stdout)
    assert proc.stdout.count("\n") == 1
    assert (payload["model"], payload["k"], payload["n_pairs"]) == ("tiny-llama", 2, COPYING_PAIRS)
