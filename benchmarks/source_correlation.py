"""Which source representation agrees with what the heads do? The correlation experiment with
every representation, on the same pairs, the same k and the same dynamic side.

The dynamic scores (the model run on the paper's four templates) are computed once per output
projection (with or without the folded norms); only the static side changes. Prints, per
representation, the medians over operations of Pearson r over templates × heads (the paper's
way), the template-averaged r and the within-layer r, without and with context, with the
templates' own agreement (the ceiling), each headline r as a ratio to a baseline measured in the
same run (``--baseline``, by default ``embed+mlp0``, the default before the residual source) and
its difference from the paper's recipe. Also the cost of each static side.

    python benchmarks/source_correlation.py --model gemma-3-270m
    python benchmarks/source_correlation.py --model qwen2.5-coder-0.5b-instruct --max-pairs 50
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from describer.maps.analyzer import Analyzer  # noqa: E402
from describer.maps.loading import load_model  # noqa: E402
from describer.maps.operations import builtin_operations, tokenize  # noqa: E402
from describer.maps.settings import SourceChoice  # noqa: E402
from evaluation.correlation import cap_pairs, dynamic_scores  # noqa: E402
from evaluation.correlation_stats import correlation_row, medians  # noqa: E402

SOURCES = ("paper", "embed", "mlp0", "embed+mlp0", "residual")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--max-pairs", type=int, default=50)
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--baseline", default="embed+mlp0", help="The source the ratios are against.")
    parser.add_argument("--per-operation", action="store_true", help="Also print each operation's r.")
    args = parser.parse_args()
    loaded = load_model(args.model)
    adapter, tok = loaded.adapter, loaded.tokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # operations with fewer than 30 usable pairs
        ops = []
        for op in builtin_operations().values():
            try:
                ops.append(cap_pairs(tokenize(op, tok, adapter.vocab_size), args.max_pairs))
            except Exception:  # noqa: BLE001  (no usable pairs for this tokenizer)
                continue
    print(f"{loaded.name}: {len(ops)} operations, ≤{args.max_pairs} pairs each")
    dynamic: dict[bool, list] = {}
    table = []
    for name in args.sources.split(","):
        settings = SourceChoice.checked(name).settings(loaded.family)
        if settings.fold_norms not in dynamic:
            t0 = time.perf_counter()
            dynamic[settings.fold_norms] = dynamic_scores(loaded.model, adapter, tok, settings, ops)
            print(f"dynamic side (fold_norms={settings.fold_norms}): {time.perf_counter() - t0:.0f}s")
        t0 = time.perf_counter()
        analyzer = Analyzer(adapter, tok, settings)
        _, static = analyzer.analyze(ops, with_salient=False)
        seconds = time.perf_counter() - t0
        rows = [correlation_row(s, d) for s, d in zip(static, dynamic[settings.fold_norms], strict=True)]
        table.append((name, medians(rows), seconds, rows))
    found = {name: m for name, m, _, _ in table}
    base, paper = found.get(args.baseline), found.get("paper")
    keys = (
        ("r w/o", "median_r_without_context"),
        ("r with", "median_r_with_context"),
        ("avg w/o", "median_r_without_context_averaged"),
        ("avg with", "median_r_with_context_averaged"),
        ("layer w/o", "median_within_layer_r_without_context"),
        ("layer with", "median_within_layer_r_with_context"),
    )
    head = f"{'vs ' + args.baseline:>20}{'minus paper':>16}{'static s':>10}"
    print(f"{'source':<12}" + "".join(f"{label:>11}" for label, _ in keys) + head)
    for name, m, seconds, _ in table:
        w, c = "median_r_without_context", "median_r_with_context"
        ratio = minus = ""
        if base and base[w] and base[c] and m[w] is not None and m[c] is not None:
            ratio = f"{m[w] / base[w]:.2f}x/{m[c] / base[c]:.2f}x"
        if paper and None not in (paper[w], paper[c], m[w], m[c]):
            minus = f"{m[w] - paper[w]:+.2f}/{m[c] - paper[c]:+.2f}"
        cells = "".join(f"{m[k]:>11.3f}" if m[k] is not None else f"{'n/a':>11}" for _, k in keys)
        print(f"{name:<12}{cells}{ratio:>20}{minus:>16}{seconds:>10.1f}")
    ceiling = table[-1][1]
    print(
        f"template ceiling: {ceiling['median_ceiling_without_context']:.3f} without context, "
        f"{ceiling['median_ceiling_with_context']:.3f} with context"
    )
    if args.per_operation:
        for name, _, _, rows in table:
            print(f"\n{name}")
            for r in rows:
                print(f"  {r.operation:<22} {r.r_without_context!s:>10} {r.r_with_context!s:>10}")


if __name__ == "__main__":
    main()
