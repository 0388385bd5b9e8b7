"""Streamed weights against the whole model loaded first, on a real model: peak memory, time and
whether the results are the same.

Each method is a fresh ``headmaps analyze MODEL --no-store --json`` process (so peak RSS is that
method's alone), on the same settings (the family's defaults, every built-in operation, the
attention patterns unless ``--no-patterns``):

- ``stream`` (the default): a skeleton model, each block's weights read from the safetensors
  files (the converted cache for a GGUF) when used, the embedding and unembedding in chunks;
- ``full`` (the baseline, how ``analyze`` loaded models before): the whole model in float32.

    python benchmarks/bench_streaming.py [--model gemma-3-270m] [--no-patterns] [--repeat 1]
        [--baseline-tree DIR]

``--baseline-tree DIR`` runs the ``full`` baseline from another checkout of headmaps (``python -m
describer.cli`` in DIR imports DIR's code), e.g. ``git worktree add DIR COMMIT`` for the analyzer
as an earlier commit had it, against this checkout's streamed runs, in the same run. A checkout
from before ``--weights`` existed (682c37a, where issue 12 started: "no slower than today") always
loaded the whole model, so it runs without that option.

Prints wall time and peak RSS per run, the median times' ratio (the methods alternate which goes
first, round by round, so neither always runs on a warmer or a busier machine), and whether every
score, salient token and mapping agrees.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.processes import measured  # noqa: E402


def run(
    model: str,
    weights: str,
    out: Path,
    patterns: bool,
    extra: list[str] | None = None,
    tree: str | None = None,
    device: str = "cpu",
) -> tuple[float, float]:
    """(wall seconds, peak RSS in GiB) of one analyze process on ``device`` (``extra``: more
    options; ``tree``: the checkout whose code runs, default this one)."""
    args = [sys.executable, "-m", "describer.cli", "analyze", model, "--no-store", "--json", str(out)]
    if tree is None or has_weights_option(tree):
        args += ["--weights", weights]
    args += ["--device", device] + ([] if patterns else ["--no-patterns"]) + (extra or [])
    wall, rss, _ = measured(args, f"{weights}: analyze", cwd=tree)
    return wall, rss


def has_weights_option(tree: str) -> bool:
    """Whether the checkout in ``tree`` has ``analyze --weights`` (older ones always loaded the
    whole model in float32, the ``full`` method)."""
    cli = Path(tree) / "describer" / "cli"
    return any('"--weights"' in f.read_text() for f in cli.glob("*.py"))


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
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each method, interleaved (stream, full, full, stream, …)",
    )
    parser.add_argument(
        "--baseline-tree", metavar="DIR", help="run the full baseline from this checkout's code"
    )
    args = parser.parse_args()
    if args.baseline_tree and not (Path(args.baseline_tree) / "describer" / "cli").is_dir():
        raise SystemExit(f"error: {args.baseline_tree} is not a checkout of headmaps")
    if args.repeat < 1:
        raise SystemExit("error: --repeat must be at least 1")
    order = [("stream", "full") if i % 2 == 0 else ("full", "stream") for i in range(args.repeat)]
    walls: dict[str, list[float]] = {"stream": [], "full": []}
    peaks: dict[str, list[float]] = {"stream": [], "full": []}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, pair in enumerate(order):
            for weights in pair:
                out = Path(tmp) / f"{weights}.json"
                tree = args.baseline_tree if weights == "full" else None
                wall, rss = run(args.model, weights, out, args.patterns, tree=tree)
                walls[weights].append(wall)
                peaks[weights].append(rss)
                result = json.loads(out.read_text())
                if weights in results and same(results[weights], result):
                    raise SystemExit(f"error: {weights} gave different results in run {i + 1}")
                results[weights] = result
                print(f"run {i + 1} {weights:>6}: {wall:7.1f} s   peak RSS {rss:5.2f} GiB", flush=True)
    if args.baseline_tree:
        print(f"(full: the code in {args.baseline_tree})")
    ws, wf = statistics.median(walls["stream"]), statistics.median(walls["full"])
    rs, rf = max(peaks["stream"]), max(peaks["full"])
    print(f"median of {args.repeat}: stream {ws:.1f} s, full {wf:.1f} s")
    print(f"stream / full: time {ws / wf:.2f}x, peak RSS {rs / rf:.2f}x (largest peaks)")
    if args.repeat > 1:
        # Each round's two runs side by side: the machine's drift over the whole run cancels.
        ratios = [a / b for a, b in zip(walls["stream"], walls["full"], strict=True)]
        print("per round: " + ", ".join(f"{r:.2f}x" for r in ratios))
    diffs = same(results["stream"], results["full"])
    print("results: identical" if not diffs else f"results differ: {', '.join(diffs[:10])}")
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB)")


if __name__ == "__main__":
    main()
