"""A big user operation file: peak memory and time of ``headmaps score --pairs`` as the number
of pairs grows.

The benchmark draws distinct (source, target) pairs of single-token words from the model's own
tokenizer (each ``" " + word`` one token, letters only, seeded), writes them as a two-column CSV
and runs ``headmaps score MODEL --pairs FILE --json`` as a fresh process per size, so each peak
RSS is that run's alone. The baseline, measured in the same run, is the smallest size: memory
should stay flat as pairs are added (they go in bounded batches), and time grow about linearly.

    python benchmarks/bench_pairs.py [--model gemma-3-270m] [--sizes 5000,50000]

Prints per size: pairs scored, wall time, time per 1,000 pairs and peak RSS, and the ratios
against the baseline.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.processes import measured  # noqa: E402


def words(model: str) -> list[str]:
    """Words whose ``" " + word`` is one token of ``model``'s tokenizer."""
    from describer.maps.loading import load_model
    from describer.maps.operations import single_token

    tokenizer = load_model(model, weights="stream").tokenizer
    found = []
    for token in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))):
        word = (token or "").lstrip("\u2581\u0120")
        if word != (token or "") and word.isascii() and word.isalpha() and len(word) >= 3:
            found.append(word)
    return sorted({w for w in found if single_token(tokenizer, w) is not None})


def write_pairs(path: Path, vocabulary: list[str], n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    pairs: set[tuple[str, str]] = set()
    while len(pairs) < n:
        pairs.add((rng.choice(vocabulary), rng.choice(vocabulary)))
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["source", "target"])
        out.writerows(sorted(pairs))


def run(model: str, pairs: Path) -> tuple[float, float, dict]:
    """(wall seconds, peak RSS in GiB, the JSON answer) of one ``score`` process."""
    args = [sys.executable, "-m", "describer.cli", "score", model, "--pairs", str(pairs), "--json"]
    args += ["--device", "cpu"]
    wall, rss, out = measured(args, "score")
    return wall, rss, json.loads(out[out.index("{") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--sizes", default="5000,50000", help="numbers of pairs, the first is the baseline")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    vocabulary = words(args.model)
    print(f"{args.model}: {len(vocabulary)} single-token words to draw pairs from", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"pairs_{n}.csv"
            write_pairs(path, vocabulary, n)
            wall, rss, answer = run(args.model, path)
            scored = answer.get("n_pairs", n)
            results.append((n, wall, rss))
            print(
                f"{n:>7} pairs ({scored} scored): {wall:7.1f} s, {1000 * wall / n:6.2f} s per 1,000 pairs, "
                f"peak RSS {rss:5.2f} GiB",
                flush=True,
            )
    base_n, base_wall, base_rss = results[0]
    for n, wall, rss in results[1:]:
        print(
            f"{n} / {base_n} pairs ({n / base_n:.0f}x the pairs): time {wall / base_wall:.2f}x, "
            f"peak RSS {rss / base_rss:.2f}x"
        )


if __name__ == "__main__":
    main()
