"""Streamed weights against the whole model loaded first, on a real model: peak memory, time and
whether the results are the same.

Each method is a fresh ``headmaps analyze MODEL --no-store --json`` process (so peak RSS is that
method's alone), on the same settings (the family's defaults, every built-in operation, the
attention patterns unless ``--no-patterns``):

- ``stream`` (the default): a skeleton model, each block's weights read from the safetensors
  files (the converted cache for a GGUF) when used, the embedding and unembedding in chunks;
- ``full`` (the baseline, how ``analyze`` loaded models before): the whole model in float32.

    python benchmarks/bench_streaming.py [--model gemma-3-270m] [--no-patterns] [--repeat 1]

Prints wall time and peak RSS per method, the ratios, and whether every score, salient token
and mapping agrees.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.processes import measured  # noqa: E402


def run(
    model: str, weights: str, out: Path, patterns: bool, extra: list[str] | None = None
) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of one analyze process (``extra``: more options)."""
    args = [sys.executable, "-m", "describer.cli", "analyze", model, "--no-store", "--json", str(out)]
    args += (
        ["--weights", weights, "--device", "cpu"] + ([] if patterns else ["--no-patterns"]) + (extra or [])
    )
    wall, rss, _ = measured(args, f"{weights}: analyze")
    return wall, rss


def same(a: dict, b: dict) -> list[str]:
    """What differs between two results (empty when they agree)."""
    diffs = []
    for name, op in a["operations"].items():
        other = b["operations"].get(name)
        if other is None or op["scores"] != other["scores"] or op["suppression"] != other["suppression"]:
            diffs.append(f"operation {name}")
    for ha, hb in zip(a["heads"], b["heads"], strict=True):
        ids_a = [(s["token_id"], [m["token_id"] for m in s["mappings"]]) for s in ha["salient"]]
        ids_b = [(s["token_id"], [m["token_id"] for m in s["mappings"]]) for s in hb["salient"]]
        if ids_a != ids_b:
            diffs.append(f"head {ha['layer']}.{ha['head']}")
    if (a.get("patterns") or {}).get("scores") != (b.get("patterns") or {}).get("scores"):
        diffs.append("patterns")
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--no-patterns", dest="patterns", action="store_false")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for weights in ("stream", "full"):
            out = Path(tmp) / f"{weights}.json"
            results[weights] = (*run(args.model, weights, out, args.patterns), json.loads(out.read_text()))
            wall, rss, _ = results[weights]
            print(f"{weights:>6}: {wall:7.1f} s   peak RSS {rss:5.2f} GB", flush=True)
    (ws, rs, a), (wf, rf, b) = results["stream"], results["full"]
    print(f"stream / full: time {ws / wf:.2f}x, peak RSS {rs / rf:.2f}x")
    diffs = same(a, b)
    print("results: identical" if not diffs else f"results differ: {', '.join(diffs[:10])}")
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB)")


if __name__ == "__main__":
    main()
