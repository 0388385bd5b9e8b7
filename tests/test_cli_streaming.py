"""``--weights stream`` (the default) and ``--weights full`` from the command line: the same
results, said in the output; bad checkpoints and options refused with one error line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests._cli import (  # noqa: F401  (fixtures are used by name)
    assert_ok,
    assert_user_error,
    cache_dir,
    invoke,
    out_dir,
    score_json,
    tiny_dir,
    tokenizer,
)


def analyze_json(model: Path, out: Path, *extra: str) -> dict:
    result = invoke("analyze", model, "--no-store", "--no-patterns", "--json", out, "--device", "cpu", *extra)
    assert_ok(result)
    return json.loads(out.read_text(encoding="utf-8"))


def test_stream_and_full_agree(tiny_dir: Path, out_dir: Path) -> None:
    streamed = analyze_json(tiny_dir, out_dir / "s.json", "--operations", "general_copying,name_copying")
    full = analyze_json(
        tiny_dir, out_dir / "f.json", "--operations", "general_copying,name_copying", "--weights", "full"
    )
    assert streamed["settings"]["weights"] == "streamed block by block"
    assert full["settings"]["weights"] == "whole model loaded"
    assert streamed["operations"] == full["operations"]
    assert streamed["heads"] == full["heads"]
    assert any(op["scores"] for op in streamed["operations"].values())


def test_score_streams_too(tiny_dir: Path) -> None:
    assert score_json(tiny_dir, "--operation", "general_copying") == score_json(
        tiny_dir, "--operation", "general_copying", "--weights", "full"
    )


@pytest.fixture()
def sharded(tiny_dir: Path, tmp_path: Path) -> Path:
    """The tiny model re-saved as several shards with an index."""
    from transformers import AutoModelForCausalLM

    target = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(tiny_dir).save_pretrained(target, max_shard_size="100KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_dir / name).exists():
            shutil.copy(tiny_dir / name, target / name)
    assert len(list(target.glob("*.safetensors"))) > 2
    return target


def test_sharded_checkpoint_streams(sharded: Path, tiny_dir: Path, out_dir: Path) -> None:
    a = analyze_json(sharded, out_dir / "a.json", "--operations", "general_copying")
    b = analyze_json(tiny_dir, out_dir / "b.json", "--operations", "general_copying")
    assert a["operations"] == b["operations"] and a["heads"] == b["heads"]


def _refused(model: Path, out_dir: Path, *fragments: str) -> None:
    result = invoke("analyze", model, "--json", out_dir / "r.json", "--no-store", "--device", "cpu")
    assert_user_error(result, *fragments)
    assert list(out_dir.iterdir()) == []


def test_missing_shard(sharded: Path, out_dir: Path) -> None:
    victim = sorted(sharded.glob("*.safetensors"))[1]
    victim.unlink()
    _refused(sharded, out_dir, victim.name)


def test_truncated_shard(sharded: Path, out_dir: Path) -> None:
    victim = sorted(sharded.glob("*.safetensors"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    _refused(sharded, out_dir, victim.name)


def test_index_naming_absent_file(sharded: Path, out_dir: Path) -> None:
    index = sharded / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    name = next(iter(data["weight_map"]))
    data["weight_map"][name] = "model-99999-of-99999.safetensors"
    index.write_text(json.dumps(data))
    _refused(sharded, out_dir, "model-99999-of-99999.safetensors")


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [("--weights", "mmap", "unknown --weights"), ("--dtype", "float8", "unknown --dtype")],
)
def test_bad_options(tiny_dir: Path, out_dir: Path, option: str, value: str, fragment: str) -> None:
    result = invoke("analyze", tiny_dir, option, value, "--json", out_dir / "r.json", "--no-store")
    assert_user_error(result, fragment)
    assert list(out_dir.iterdir()) == []


def test_dtype_needs_streaming(tiny_dir: Path, out_dir: Path) -> None:
    result = invoke(
        "analyze",
        tiny_dir,
        "--weights",
        "full",
        "--dtype",
        "bfloat16",
        "--json",
        out_dir / "r.json",
        "--no-store",
    )
    assert_user_error(result, "--dtype bfloat16 needs --weights stream")


def test_bfloat16_compute_stays_close(tiny_dir: Path, out_dir: Path) -> None:
    exact = analyze_json(tiny_dir, out_dir / "e.json", "--operations", "general_copying")
    half = analyze_json(
        tiny_dir, out_dir / "h.json", "--operations", "general_copying", "--dtype", "bfloat16"
    )
    assert half["settings"]["dtype"] == "bfloat16"
    a = exact["operations"]["general_copying"]["scores"]
    b = half["operations"]["general_copying"]["scores"]
    assert max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)) <= 0.1
