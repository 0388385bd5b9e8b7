"""How long the attention-pattern scores take, and how much memory, against the obvious way.

headmaps (``describer.maps.attention``): one pass of the base model (no LM head) over the
pattern inputs, ``chunk`` sequences at a time, with eager attention and a hook per layer that
reduces that layer's probabilities to the six scores at once.

Baselines (what a user of transformers writes first, and what TransformerLens-style detectors
do): the model run once per detector input set with ``output_attentions=True``, every layer's
probabilities kept, the scores computed from them afterwards; two passes (the random first
halves alone for previous-token, first-token, entropy and distance, and the repeated sequences
for induction and duplicate-token), each over the whole batch. Once as the causal LM (with its
LM head, as ``model(...)`` runs) and once as the base model only (the fairer one: no logits).

Both read the same inputs; the benchmark checks that they give the same scores, then prints
seconds and peak extra memory (each method in a fresh process, the model loaded first; the peak
is the RSS high-water mark over the loaded model's) and the ratios. With ``--analyze`` it also
times ``analyze_model`` on every built-in operation with and without the patterns, to show
their share of the whole analysis.

    python benchmarks/bench_patterns.py [--model gemma-3-270m] [--analyze]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from describer.maps.attention import measure, reduce_pattern, sample_sequences  # noqa: E402
from describer.maps.jobs import analyze_model  # noqa: E402
from describer.maps.loading import load_model  # noqa: E402
from describer.maps.operations import builtin_operations  # noqa: E402
from describer.maps.patterns import PATTERNS, PatternSettings  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.inference_mode()
def baseline(model: torch.nn.Module, ids: torch.Tensor, length: int) -> dict[str, list[list[float]]]:
    """Two passes of ``model`` with ``output_attentions=True``; scores from the kept tensors."""
    model.set_attn_implementation("eager")
    first = model(input_ids=ids[:, : length + 1], output_attentions=True, use_cache=False).attentions
    both = model(input_ids=ids, output_attentions=True, use_cache=False).attentions
    out: dict[str, list[list[float]]] = {name: [] for name in PATTERNS}
    for a_first, a_both in zip(first, both, strict=True):
        # reduce_pattern's first-half scores only read the first ``length + 1`` positions, which
        # causal attention makes identical in both passes: take them from the short pass.
        short = reduce_pattern(torch.nn.functional.pad(a_first, (0, length, 0, length)), length)
        full = reduce_pattern(a_both, length)
        for name in PATTERNS:
            source = full if name in ("induction", "duplicate_token") else short
            out[name].append([float(v) / len(ids) for v in source[name]])
    return out


METHODS = ("headmaps", "causal-lm", "base-model")


def run_one(method: str, model_name: str) -> None:
    """One method in this process: prints a JSON line with seconds, peak RSS over the loaded
    model, and the scores (so the parent can compare them)."""
    loaded = load_model(model_name)
    settings = PatternSettings()
    loaded_mb = rss_mb()
    t = time.perf_counter()
    ids = sample_sequences(loaded.tokenizer, loaded.adapter.vocab_size, settings)
    if method == "headmaps":
        scores = measure(loaded.adapter, ids, settings.length, chunk=settings.chunk)
    else:
        scores = baseline(
            loaded.model if method == "causal-lm" else loaded.model.base_model, ids, settings.length
        )
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "peak_mb": rss_mb() - loaded_mb, "scores": scores}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument(
        "--analyze", action="store_true", help="also time the whole analysis with and without"
    )
    parser.add_argument("--only", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        run_one(args.only, args.model)
        return
    print(f"{args.model}: each method in a fresh process (the model loaded first, not timed)")
    results = {}
    for method in METHODS:
        out = subprocess.run(
            [sys.executable, __file__, "--model", args.model, "--only", method],
            capture_output=True,
            text=True,
            check=True,
        )
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    ours = results["headmaps"]
    for method in METHODS[1:]:
        worst = max(
            abs(a - b)
            for name in PATTERNS
            for row_a, row_b in zip(ours["scores"][name], results[method]["scores"][name], strict=True)
            for a, b in zip(row_a, row_b, strict=True)
        )
        print(f"{method}: same scores as headmaps, largest difference {worst:.2e}")
    print(f"{'':14}{'seconds':>10}{'peak +MB':>10}{'time ratio':>12}{'memory ratio':>14}")
    for method in METHODS:
        r = results[method]
        print(
            f"{method:14}{r['seconds']:10.2f}{r['peak_mb']:10.0f}"
            f"{r['seconds'] / ours['seconds']:11.2f}x{r['peak_mb'] / max(ours['peak_mb'], 1):13.1f}x"
        )
    print("(ratios: baseline / headmaps; above 1 means headmaps is faster or smaller)")
    for name in ("induction", "previous_token", "duplicate_token", "first_token"):
        flat = sorted(
            (
                (v, layer, head)
                for layer, row in enumerate(ours["scores"][name])
                for head, v in enumerate(row)
            ),
            reverse=True,
        )
        print(f"top {name}: " + ", ".join(f"{layer}.{head} {v:.2f}" for v, layer, head in flat[:4]))
    if args.analyze:
        loaded = load_model(args.model)
        operations = list(builtin_operations().values())
        times = {}
        for label, patterns in (("without patterns", None), ("with patterns", PatternSettings())):
            t = time.perf_counter()
            analyze_model(
                args.model, operations, loaded=loaded, device="cpu", warn=lambda _: None, patterns=patterns
            )
            times[label] = time.perf_counter() - t
            print(f"analyze_model, {len(operations)} operations, {label}: {times[label]:.1f} s")
        extra = times["with patterns"] - times["without patterns"]
        print(f"patterns add {extra:.1f} s ({times['with patterns'] / times['without patterns']:.2f}x)")


if __name__ == "__main__":
    main()
