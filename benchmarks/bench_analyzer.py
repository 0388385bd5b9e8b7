"""Time the paper's loop (describer/maps/reference.py, one head at a time) against the fast Analyzer.

Both run in this one process on the same work, with the paper's exact recipe (``--source
paper``): the salient operations of every head
(top N=15 sources, k=5 mappings) and the scores of all 20 built-in operations.

``--model gpt2-small-random``: a GPT2LMHeadModel with GPT-2 small's shapes (12 layers x 12
heads, d=768, vocabulary 50257) and random weights. GPT-2's real tokenizer cannot be
downloaded here, so the tokenizer is a byte-level word-level one built offline: every
operation word that is a single pre-token (a word, or a number) gets the id of ``" " + word``,
the rest of the 50257 ids are filler words, and the last is ``<|endoftext|>``. Multi-word
entries are dropped as a real tokenizer would; about 3400 pairs survive, close to a real run.

``--model gemma-3-270m`` (or any MODEL ``describer.maps.loading.load_model`` accepts): real weights.
The reference on all heads would take far too long on a CPU, so it runs on
``--reference-heads`` heads spread over the layers, and its time is extrapolated: its
once-per-call setup (source representations for the vocabulary) is timed on its own and
counted once, the rest is scaled per head to the whole model.

The fast path runs first, so the peak RSS reported after it is the fast path's (model included).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings

import torch

from describer.errors import HeadmapsError
from describer.maps.analyzer import Analyzer
from describer.maps.operations import builtin_operations, tokenize
from describer.maps.reference import PaperReference, paper_operation_scores, paper_salient
from describer.maps.settings import AnalysisSettings, SourceChoice


def gpt2_small_random(seed: int) -> tuple[object, object]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    config = GPT2Config()
    model = GPT2LMHeadModel(config).float().eval().requires_grad_(False)
    split = pre_tokenizers.ByteLevel(add_prefix_space=False)
    words: dict[str, None] = {}
    for op in builtin_operations().values():
        for pair in op.pairs:
            for word in pair:
                pieces = split.pre_tokenize_str(" " + word)
                if len(pieces) == 1:
                    words[pieces[0][0]] = None
    vocab = list(words)
    vocab += [f"filler{i}" for i in range(config.vocab_size - 1 - len(vocab))] + ["<|endoftext|>"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = split
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    assert len(tokenizer) == config.vocab_size
    return model, tokenizer


def spread_heads(n_layers: int, n_heads: int, n: int) -> list[tuple[int, int]]:
    """``n`` heads spread evenly over the layers, cycling through head indices."""
    if n >= n_layers * n_heads:
        return [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    layers = torch.linspace(0, n_layers - 1, n).round().long().tolist()
    return sorted({(layer, i % n_heads) for i, layer in enumerate(layers)})


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_rss_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gpt2-small-random", help="gpt2-small-random, or a MODEL to load")
    parser.add_argument(
        "--reference-heads",
        type=int,
        default=None,
        help="heads the reference runs on (default: all for gpt2-small-random, 4 otherwise)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")

    t0 = time.perf_counter()
    if args.model == "gpt2-small-random":
        model, tokenizer = gpt2_small_random(args.seed)
        model = model.to(device)
        family, name = "gpt2", "GPT-2 small shapes, random weights"
        n_ref = args.reference_heads
    else:
        from describer.maps.loading import load_model

        loaded = load_model(args.model, device=device)
        model, tokenizer, family, name = loaded.model, loaded.tokenizer, loaded.family, loaded.name
        n_ref = args.reference_heads or 4
    from describer.maps.adapters import adapter_for

    adapter = adapter_for(model)
    load_s = time.perf_counter() - t0
    # The reference is the paper's recipe: both sides run it.
    settings: AnalysisSettings = SourceChoice.checked("paper").settings(family)
    ops, skipped = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # operations with fewer than 30 usable pairs
        for op in builtin_operations().values():
            try:
                ops.append(tokenize(op, tokenizer, adapter.vocab_size))
            except HeadmapsError:  # no single-token pairs for this tokenizer; `analyze` skips it too
                skipped.append(op.name)
    n_pairs = sum(op.n_pairs for op in ops)
    L, H = adapter.n_layers, adapter.n_heads
    print(
        f"model: {name} ({family}), {L} layers x {H} heads, d={adapter.d_model}, vocab {adapter.vocab_size}"
    )
    print(f"settings: {settings.model_dump()}  device: {device}  threads: {torch.get_num_threads()}")
    print(
        f"operations: {len(ops)}, {n_pairs} pairs (k: {sorted({op.k for op in ops})}); loaded in {load_s:.1f}s"
    )
    if skipped:
        print(f"skipped (no single-token pairs): {', '.join(skipped)}")
    rss_before = peak_rss_gib()

    # --- fast ------------------------------------------------------------------------------
    sync(device)
    t0 = time.perf_counter()
    analyzer = Analyzer(adapter, tokenizer, settings, device=device)
    fast_heads, fast_scores = analyzer.analyze(ops, with_salient=True)
    sync(device)
    fast_s = time.perf_counter() - t0
    rss_fast = peak_rss_gib()
    print(f"fast Analyzer: {fast_s:.1f}s wall, peak RSS {rss_fast:.2f} GiB (before it: {rss_before:.2f} GiB)")
    if device.startswith("cuda"):
        print(f"  peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")

    # --- reference -------------------------------------------------------------------------
    heads = [(la, h) for la in range(L) for h in range(H)] if n_ref is None else spread_heads(L, H, n_ref)
    every = len(heads) == L * H
    setup_s = 0.0
    if not every:
        sync(device)
        t0 = time.perf_counter()
        PaperReference(model)
        sync(device)
        setup_s = time.perf_counter() - t0
    print(f"reference on {len(heads)} of {L * H} heads" + ("" if every else f": {heads}"), flush=True)
    sync(device)
    t0 = time.perf_counter()
    allowed = analyzer.readable_mask() if settings.readable_only else None
    texts = [analyzer.token_text(i) for i in range(adapter.vocab_size)]
    ref_heads = paper_salient(
        model, texts, settings.top_tokens, settings.top_mappings, allowed=allowed, heads=heads
    )
    sync(device)
    ref_salient_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_scores = paper_operation_scores(model, ops, heads=heads)
    sync(device)
    ref_scores_s = time.perf_counter() - t0
    ref_s = ref_salient_s + ref_scores_s
    if every:
        ref_total, how = ref_s, "measured"
    else:
        # Two calls, each with one setup; everything else is per head.
        per_head = (ref_s - 2 * setup_s) / len(heads)
        ref_total, how = 2 * setup_s + per_head * L * H, "extrapolated"
        print(
            f"  measured {ref_s:.1f}s on {len(heads)} heads (salient {ref_salient_s:.1f}s, scores "
            f"{ref_scores_s:.1f}s; setup {setup_s:.1f}s per call) -> {per_head:.1f}s per head"
        )

    # --- agreement ------------------------------------------------------------------------
    diff = 0.0
    for f, r in zip(fast_scores, ref_scores, strict=True):
        for table in ("scores", "suppression"):
            ft, rt = torch.tensor(getattr(f, table)), torch.tensor(getattr(r, table))
            for layer, head in heads:
                diff = max(diff, abs(float(ft[layer, head] - rt[layer, head])))
    fast_by_head = {(h.layer, h.head): h for h in fast_heads}
    same_sources = same_maps = n_src = n_map = 0
    for r in ref_heads:
        f = fast_by_head[(r.layer, r.head)]
        same_sources += sum(a.token_id == b.token_id for a, b in zip(f.salient, r.salient, strict=False))
        n_src += len(r.salient)
        for a, b in zip(f.salient, r.salient, strict=False):
            same_maps += sum(x.token_id == y.token_id for x, y in zip(a.mappings, b.mappings, strict=False))
            n_map += len(b.mappings)

    print()
    print(f"{'what':<46} {'reference s':>18} {'fast s':>9} {'ratio':>8}")
    what = f"salient (N={settings.top_tokens}, k={settings.top_mappings}) + {len(ops)} ops, {L * H} heads"
    ref_cell = f"{ref_total:.1f} ({how})"
    print(f"{what:<46} {ref_cell:>18} {fast_s:>9.1f} {ref_total / fast_s:>7.1f}x")
    print()
    print(f"agreement on the {len(heads)} reference heads:")
    print(f"  max |score difference| (relation and suppression, all ops): {diff:.2e}")
    print(
        f"  salient sources identical: {same_sources}/{n_src}; mapped tokens identical: {same_maps}/{n_map}"
    )
    print(
        f"fast path: {fast_s:.1f}s wall, peak RSS {rss_fast:.2f} GiB; process peak RSS now {peak_rss_gib():.2f} GiB"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
