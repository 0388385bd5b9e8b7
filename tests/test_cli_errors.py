"""Bad input to the ``headmaps`` command line: one ``error:`` line and exit 2, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from describer.cli import console
from describer.maps.operations import builtin_operations, single_token
from tests._cli import (  # noqa: F401  (fixtures are used by name)
    assert_user_error,
    bert_dir,
    cache_dir,
    invoke,
    out_dir,
    t5_dir,
    tiny_dir,
    tokenizer,
    write_pairs_json,
)

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
        ("shape.json", '{"cat": 3}', "expected a JSON list of [source, target] string pairs"),
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
    import describer.analyze

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(describer.analyze, "analyze_model", interrupted)
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

    monkeypatch.setattr(console.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        console.write_atomic(target, "new")
    assert os.listdir(tmp_path) == ["result.json"]
    assert target.read_text(encoding="utf-8") == "old"


@pytest.mark.parametrize(
    ("command", "extra"),
    [(["analyze"], []), (["score"], ["--operation", "general_copying"]), (["evaluate", "correlation"], [])],
)
def test_unknown_source(tiny_dir: Path, command: list[str], extra: list[str]) -> None:
    result = invoke(*command, tiny_dir, *extra, "--source", "mlp1", "--device", "cpu")
    assert_user_error(result, "unknown --source 'mlp1'; use one of: embed, mlp0, embed+mlp0, residual, paper")
