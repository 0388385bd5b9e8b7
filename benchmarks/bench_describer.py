"""How well the describer names the operation of planted heads, per prompt × backend.

Planted mapping tables (``benchmarks/planted_heads.py``: one head per operation plus junk heads
with no pattern, each row mixing the target with plausible noise) are described through the
same code as ``headmaps describe --mappings`` (``describer.tables``), with an empty response
cache, by each configuration in turn, in one run. A description is right by the keyword rule
stated in ``planted_heads`` (it names the operation and is not unclear; junk is unclear).

Printed for each configuration, side by side: right / heads (accuracy), valid answers (in the
schema), seconds a head, tokens in and out a head, and the first head's seconds (the fixed
prompt prefix is evaluated once, then kept in the KV cache), plus each head's verdict.

The baseline is the first configuration: the MAPS paper's prompt (``salient``,
one user message, no measured relations) on the same llama.cpp runtime with a JSON-schema
grammar (the best the old prompt can get from this runtime).

    python benchmarks/bench_describer.py [--seed 0] [--junk 2] [--per-operation 1]
        [--configs salient:grammar,facts:grammar,facts:guided-cold,facts:guided] [--signal 0.8]

MODE ``guided-cold`` is ``guided`` with llama.cpp's KV cache emptied before every request, so
the fixed system prefix is evaluated for every head: the difference to ``guided`` is what
keeping it between heads saves.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import prompts  # noqa: E402
from benchmarks.planted_heads import is_right, planted_heads  # noqa: E402
from describer.llm import Describer, ResponseCache, default_params  # noqa: E402
from describer.llm.llamacpp import LlamaCppBackend  # noqa: E402
from describer.llm.local import LOCAL_MODEL, local_model_file  # noqa: E402
from describer.mapping_tables import MappingTable  # noqa: E402
from describer.tables import describe_tables  # noqa: E402

DEFAULT_CONFIGS = "salient:grammar,facts:grammar,facts:guided-cold,facts:guided"


def blind(heads: list) -> list[MappingTable]:
    """The tables under opaque names: a planted head's name ("plural-1") is the answer."""
    return [MappingTable(f"head-{i:02d}", h.table.rows) for i, h in enumerate(heads)]


class ColdBackend(LlamaCppBackend):
    """The same backend with its KV cache emptied before every request: what each head costs
    without the fixed prefix kept between heads."""

    def _complete(self, messages, params):  # noqa: ANN001, ANN202
        self.load()
        self._llm.reset()
        return super()._complete(messages, params)


def run_config(prompt: str, mode: str, heads: list, model_file: Path, cache_dir: Path) -> dict:
    template = prompts.load(prompt)
    cold = mode.endswith("-cold")
    spec, mode = f"{prompt}-{mode}", mode.removesuffix("-cold")
    backend = (ColdBackend if cold else LlamaCppBackend)(model_file, LOCAL_MODEL, mode=mode)  # type: ignore[arg-type]
    cache = ResponseCache(cache_dir / f"{spec}.sqlite")  # empty: every answer is paid for
    describer = Describer(backend, params=default_params(True), concurrency=1, cache=cache)
    times: list[float] = []

    def progress(run) -> None:  # noqa: ANN001
        times.append(time.monotonic())

    async def main():  # noqa: ANN202
        await backend.preflight()
        try:
            start = time.monotonic()
            times.append(start)
            return await describe_tables(blind(heads), template, describer, progress=progress)
        finally:
            await backend.aclose()

    summary, run = asyncio.run(main())
    cache.close()
    verdicts = []
    for head, row in zip(heads, summary.descriptions, strict=True):
        answer = row.model_dump()
        valid = row.status in ("ok", "unclear")
        verdicts.append((head, valid and is_right(head.operation, answer), valid, answer))
    results = [r for _, r in run.results.values() if r is not None]
    n = len(heads)
    return {
        "config": f"{prompt}:{mode}{'-cold' if cold else ''}",
        "right": sum(v[1] for v in verdicts),
        "valid": sum(v[2] for v in verdicts),
        "n": n,
        "s_head": summary.seconds / n,
        "first_s": times[1] - times[0] if len(times) > 1 else float("nan"),
        "rest_s": (times[-1] - times[1]) / max(n - 1, 1) if len(times) > 2 else float("nan"),
        "tok_in": sum(r.tokens_in for r in results) / n,
        "tok_out": sum(r.tokens_out for r in results) / n,
        "verdicts": verdicts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--junk", type=int, default=2)
    parser.add_argument("--per-operation", type=int, default=1)
    parser.add_argument("--signal", type=float, default=0.8)
    parser.add_argument(
        "--configs", default=DEFAULT_CONFIGS, help="PROMPT:MODE,... (MODE: guided or grammar)"
    )
    args = parser.parse_args()
    heads = planted_heads(args.seed, signal=args.signal, per_operation=args.per_operation, junk=args.junk)
    ops = sorted({h.operation for h in heads})
    print(f"{len(heads)} planted heads ({', '.join(ops)}), seed {args.seed}, signal {args.signal}")
    model_file = local_model_file()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.configs.split(","):
            prompt, _, mode = spec.strip().partition(":")
            rows.append(run_config(prompt, mode or "guided", heads, model_file, Path(tmp)))
            r = rows[-1]
            print(
                f"  done {r['config']}: {r['right']}/{r['n']} right, {r['s_head']:.1f} s a head", flush=True
            )

    base = rows[0]
    print()
    print(
        f"{'config':28} {'right':>7} {'valid':>7} {'s/head':>7} {'first s':>8} {'next s':>7} {'tok in':>7} {'tok out':>8} {'vs base':>8}"
    )
    for r in rows:
        speed = base["s_head"] / r["s_head"] if r["s_head"] else float("nan")
        print(
            f"{r['config']:28} {r['right']:>3}/{r['n']:<3} {r['valid']:>3}/{r['n']:<3} {r['s_head']:7.2f} "
            f"{r['first_s']:8.2f} {r['rest_s']:7.2f} {r['tok_in']:7.0f} {r['tok_out']:8.1f} {speed:7.2f}x"
        )
    print()
    for i, head in enumerate(heads):
        marks = []
        for r in rows:
            _, right, valid, answer = r["verdicts"][i]
            said = "unclear" if answer.get("unclear") else (answer.get("pattern") or "-")
            marks.append(f"{'+' if right else ('-' if valid else 'x')} {said[:38]:38}")
        print(f"{head.name:18} " + " | ".join(marks))


if __name__ == "__main__":
    main()
