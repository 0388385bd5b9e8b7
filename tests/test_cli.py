"""End-to-end tests of the ``headmaps`` command line on a tiny random Llama saved as a local
model directory. Most run in-process with typer's CliRunner; a few run the installed console
script in a subprocess to check real exit codes and stderr."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from describer import cli
from describer.maps.adapters import supported_families
from describer.maps.loading import ALIASES
from describer.maps.operations import builtin_operations, single_token
from tests._tiny import build_bpe_tokenizer, builtin_words, save_tiny_llama

app = cli.app
runner = CliRunner()

N_LAYERS, N_HEADS = 2, 4
COPYING_PAIRS = len(builtin_operations()["general_copying"].pairs)
WORDS = builtin_words("general_copying", "name_copying")
"""The tiny tokenizer's words: every general_copying pair is usable, no year is."""


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return build_bpe_tokenizer(WORDS)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: object) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", tokenizer)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: object) -> Path:
    """A family transformers can load as a causal LM but headmaps has no adapter for."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    path = tmp_path_factory.mktemp("models") / "tiny-bert"
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: object) -> Path:
    """A family ``AutoModelForCausalLM`` refuses to load at all."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2)
    path = tmp_path_factory.mktemp("models") / "tiny-t5"
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HEADMAPS_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HEADMAPS_PROGRESS", raising=False)
    return cache


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


# --- helpers -------------------------------------------------------------------------------------


def invoke(*args: object):  # noqa: ANN201  (click.testing.Result)
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        pytest.fail("uncaught exception:\n" + "".join(traceback.format_exception(*result.exc_info)))
    return result


def assert_ok(result) -> None:  # noqa: ANN001
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def assert_user_error(result, *fragments: str, preamble: bool = False) -> str:  # noqa: ANN001
    """Exit code 2, nothing on stdout, one ``error:`` line on stderr holding ``fragments``.

    ``preamble`` allows warnings that transformers itself prints before the error."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.stderr
    if not preamble:
        assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def score_json(*args: object) -> dict:
    result = invoke("score", *args, "--json", "--device", "cpu")
    assert_ok(result)
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)


def write_pairs_json(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text(json.dumps([list(p) for p in pairs]), encoding="utf-8")
    return path


def shifted_pairs(n: int) -> list[tuple[str, str]]:
    """``n`` pairs of tiny-vocabulary words, each word mapped to the next."""
    return [(WORDS[i], WORDS[i + 1]) for i in range(n)]


def check_grid(grid: list[list[float]], n_pairs: int) -> None:
    assert len(grid) == N_LAYERS and all(len(row) == N_HEADS for row in grid)
    for value in (v for row in grid for v in row):
        assert 0.0 <= value <= 1.0
        assert abs(value * n_pairs - round(value * n_pairs)) < 1e-3  # a fraction of the pairs


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
    assert set(data) == {"model", "settings", "heads", "operations"}
    assert data["model"] == "tiny-llama"
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
    assert set(json.loads(out.read_text())["operations"]) == {"general_copying"}


def test_analyze_without_json_writes_nothing(tiny_dir: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    result = invoke("analyze", tiny_dir, "--operations", "general_copying", "--top-tokens", "1")
    assert_ok(result)
    assert "general_copying" in result.stdout
    assert sorted(os.listdir(tmp_path)) == before


# --- bad input ------------------------------------------------------------------------------------


def analyze_error(
    out_dir: Path, *args: object, preamble: bool = False, fragments: tuple[str, ...] = ()
) -> str:
    """Run analyze with ``--json`` into ``out_dir``; it must fail cleanly and write nothing."""
    result = invoke("analyze", *args, "--json", out_dir / "result.json")
    line = assert_user_error(result, *fragments, preamble=preamble)
    assert os.listdir(out_dir) == []
    return line


@pytest.mark.parametrize("spec", ["no-such-model", "./no/such/dir", "~/no-such-headmaps-model"])
def test_unknown_model(spec: str, out_dir: Path) -> None:
    analyze_error(out_dir, spec, fragments=("unknown model", repr(spec), "gemma-3-270m"))
    assert_user_error(invoke("score", spec, "--operation", "general_copying"), "unknown model")


def test_nonexistent_absolute_path(tmp_path: Path, out_dir: Path) -> None:
    missing = tmp_path / "missing" / "model"
    analyze_error(out_dir, missing, fragments=("unknown model", str(missing)))


def test_directory_without_config(tmp_path: Path, out_dir: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    (empty / "model.safetensors").write_bytes(b"\0" * 16)
    analyze_error(out_dir, empty, fragments=(str(empty), "no config.json"))


def test_file_that_is_not_gguf(tmp_path: Path, out_dir: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGUF" + os.urandom(64))
    analyze_error(out_dir, path, fragments=("not a .gguf file",))


@pytest.mark.parametrize(
    "content",
    [b"GGUF" + b"\x03\x00\x00\x00" + b"garbage" * 4, b"GGUF" + bytes(range(256)) * 2, b"GGUF"],
    ids=["truncated", "garbage", "magic-only"],
)
def test_corrupt_gguf(tmp_path: Path, out_dir: Path, cache_dir: Path, content: bytes) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    analyze_error(out_dir, path, fragments=(str(path), "could not read this GGUF"))
    converted = cache_dir / "converted"
    assert not converted.exists() or list(converted.iterdir()) == []  # no half conversion cached


@pytest.mark.parametrize("content", [b"", b"GGU", b"LLAMA\x00\x00\x00" + b"\x00" * 64])
def test_gguf_with_bad_magic(tmp_path: Path, out_dir: Path, content: bytes) -> None:
    path = tmp_path / "fake.gguf"
    path.write_bytes(content)
    analyze_error(out_dir, path, fragments=(str(path), "bad magic"))


def test_unsupported_architecture_loaded_then_refused(bert_dir: Path, out_dir: Path) -> None:
    line = analyze_error(out_dir, bert_dir, preamble=True, fragments=("unsupported architecture 'bert'",))
    assert "llama" in line  # names the supported families


def test_architecture_transformers_cannot_load(t5_dir: Path, out_dir: Path) -> None:
    analyze_error(out_dir, t5_dir, fragments=("could not load", str(t5_dir)))
    assert_user_error(invoke("score", t5_dir, "--operation", "general_copying"), "could not load")


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bad.json", '[["cat", "cats"],\n["dog" "dogs"]]', "invalid JSON at line 2"),
        ("shape.json", '{"cat": "cats"}', "expected a JSON list of [source, target] string pairs"),
        ("three.csv", "cat,cats\ndog,dogs,puppies\n", "line 2 does not have exactly two columns"),
        ("empty.csv", "", "empty"),
        ("empty.json", "", "empty"),
        ("blank.json", '[["cat", " "]]', "empty word"),
    ],
)
def test_malformed_pairs_file(tiny_dir: Path, tmp_path: Path, name: str, text: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert_user_error(invoke("score", tiny_dir, "--pairs", path), str(path), fragment)


def test_missing_pairs_file(tiny_dir: Path, tmp_path: Path) -> None:
    assert_user_error(invoke("score", tiny_dir, "--pairs", tmp_path / "nope.csv"), "no such pairs file")


def test_pairs_file_without_usable_pairs(tiny_dir: Path, tmp_path: Path) -> None:
    path = write_pairs_json(tmp_path / "years.json", [("1999", "2000"), ("zzyzx", "qqq")])
    assert_user_error(invoke("score", tiny_dir, "--pairs", path), "'years'", "no usable pairs")


def test_operation_without_usable_pairs(tiny_dir: Path, out_dir: Path) -> None:
    assert_user_error(
        invoke("score", tiny_dir, "--operation", "year_to_following"), "year_to_following", "no usable pairs"
    )
    analyze_error(out_dir, tiny_dir, "--operations", "year_to_following", fragments=("no usable pairs",))


def test_analyze_no_chosen_operation_usable(tiny_dir: Path, tokenizer: object, tmp_path: Path) -> None:
    """Each unusable operation is skipped with a warning; when none is left, that is the error."""
    unusable = [
        name
        for name, op in builtin_operations().items()
        if not any(
            single_token(tokenizer, s) is not None and single_token(tokenizer, t) is not None
            for s, t in op.pairs
        )
    ]
    assert "year_to_following" in unusable and len(unusable) >= 2
    out = tmp_path / "none.json"
    result = invoke("analyze", tiny_dir, "--operations", ",".join(unusable[:2]), "--json", out)
    assert_user_error(result, "none of the chosen operations", preamble=True)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("no usable pairs" in w for w in warnings)
    assert not out.exists()


def test_unknown_operation(tiny_dir: Path, out_dir: Path) -> None:
    line = assert_user_error(
        invoke("score", tiny_dir, "--operation", "copying"), "unknown operation 'copying'"
    )
    assert "general_copying" in line
    analyze_error(out_dir, tiny_dir, "--operations", "general_copying,nope", fragments=("'nope'",))


@pytest.mark.parametrize("extra", [[], ["--operation", "general_copying", "--pairs", "x.json"]])
def test_score_needs_exactly_one_of_operation_and_pairs(tiny_dir: Path, extra: list[str]) -> None:
    assert_user_error(invoke("score", tiny_dir, *extra), "exactly one of --operation", "--pairs")


def test_analyze_json_in_missing_directory(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "out.json"
    result = invoke("analyze", tiny_dir, "--json", out, "--operations", "general_copying")
    assert_user_error(result, "does not exist", str(out.parent))
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    ("device", "fragment"),
    [("tpu", "unknown device 'tpu'"), ("cuda:x", "unknown device")]
    + [(d, "no CUDA device") for d in ("cuda", "cuda:0")],
)
def test_bad_device(tiny_dir: Path, out_dir: Path, device: str, fragment: str) -> None:
    import torch

    if fragment == "no CUDA device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_user_error(
        invoke("score", tiny_dir, "--operation", "general_copying", "--device", device), fragment
    )
    analyze_error(out_dir, tiny_dir, "--device", device, fragments=(fragment,))


def test_interrupt_exits_130_without_traceback(tiny_dir: Path, out_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    import describer.maps.jobs

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(describer.maps.jobs, "analyze_model", interrupted)
    result = invoke("analyze", tiny_dir, "--json", out_dir / "x.json")
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "Traceback" not in result.output
    assert os.listdir(out_dir) == []


def test_out_of_memory_is_a_user_error(tiny_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    import describer.maps.jobs

    def exhausted(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(describer.maps.jobs, "score_operation", exhausted)
    assert_user_error(invoke("score", tiny_dir, "--operation", "general_copying"), "out of memory")


def test_write_atomic_failure_leaves_no_file(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    target = tmp_path / "result.json"
    target.write_text("old", encoding="utf-8")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cli.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        cli._write_atomic(target, "new")
    assert os.listdir(tmp_path) == ["result.json"]
    assert target.read_text(encoding="utf-8") == "old"


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
    pairs.write_text('{"not": "a list"}', encoding="utf-8")
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
