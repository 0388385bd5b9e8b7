"""Which static source representation best predicts what a head really reads?

MAPS feeds each head a *static* representation of a source token. Here the candidates
(embed / mlp0 / embed+mlp0, each with and without the model's norms) are compared with the
residual stream the model actually computes at that token, in the paper's without-context
setting: for prompts "This is a document about X", take the real residual at X entering
each layer L > 0, push it through the head's real computation (pre-attention norm, W_V W_O,
post-attention norm scale, final norm scale, unembedding), and ask how many of the true
top-10 mapped tokens each candidate's static mapping also puts in its top 10.

Also reported: cosine between the candidate and the real residual after the layer's norm,
and the best head's top-k copying score with each recipe.

    python benchmarks/source_representation.py --model gemma-3-270m --tokens 60
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from describer.maps.analyzer import Analyzer
from describer.maps.loading import load_model
from describer.maps.operations import builtin_operations, single_token, tokenize
from describer.maps.settings import AnalysisSettings

CANDIDATES = [
    AnalysisSettings(source=s, mlp_norm=n, attn_norm=n, fold_norms=n)
    for s, n in itertools.product(("embed", "mlp0", "embed+mlp0"), (False, True))
]


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--tokens", type=int, default=60, help="source words to test")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()

    loaded = load_model(args.model)
    tok, adapter = loaded.tokenizer, loaded.adapter
    copying = builtin_operations()["general_copying"]
    words = [w for w, _ in copying.pairs if single_token(tok, w) is not None][: args.tokens]
    prefix = tok("This is a document about", return_tensors="pt").input_ids[0]
    ids = torch.tensor([single_token(tok, w) for w in words])
    batch = torch.cat([prefix.expand(len(ids), -1), ids[:, None]], dim=1)
    loaded.model.set_attn_implementation("eager")
    hidden = loaded.model(batch, output_hidden_states=True).hidden_states  # [L+1] of [n, T, d]

    truth = Analyzer(
        adapter, tok, AnalysisSettings(source="embed", mlp_norm=True, attn_norm=True, fold_norms=True)
    )
    U = truth._unembed_columns(slice(0, truth.vocab_size))
    copy_op = tokenize(copying, tok, truth.vocab_size)
    layers = range(1, adapter.n_layers)

    def top_sets(Y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return (Y.reshape(-1, Y.shape[-1]) @ u).topk(args.top, dim=1).indices

    true_top = {}
    for L in layers:
        lay = truth.layers[L]
        x = lay.norm(hidden[L][:, -1])
        s = (x @ lay.W_V).view(len(ids), truth.n_kv, truth.hd)
        kv = torch.arange(truth.n_heads) // (truth.n_heads // truth.n_kv)
        true_top[L] = top_sets(torch.einsum("nhe,hed->hnd", s[:, kv], lay.W_O), U)

    print(f"{loaded.name}: {len(ids)} source words, layers 1..{adapter.n_layers - 1}, top-{args.top}")
    print(
        f"{'source':<12}{'norms':<7}{'overlap@' + str(args.top):>11}{'cosine':>9}{'max copy':>10}{'secs':>7}"
    )
    for settings in CANDIDATES:
        t0 = time.perf_counter()
        an = Analyzer(adapter, tok, settings)
        u = an._unembed_columns(slice(0, an.vocab_size))
        overlaps, cosines = [], []
        for L in layers:
            static = top_sets(an.head_outputs(L, ids), u)
            hits = (static[:, :, None] == true_top[L][:, None, :]).any(-1).float().mean(1)
            overlaps.append(hits.mean())
            norm = truth.layers[L].norm
            real = norm(hidden[L][:, -1])
            cand = norm(an.source_rows(L, ids))
            cosines.append(torch.nn.functional.cosine_similarity(real, cand, dim=-1).mean())
        _, (scores,) = an.analyze([copy_op], with_salient=False)
        best = max(max(row) for row in scores.scores)
        print(
            f"{settings.source:<12}{str(settings.fold_norms):<7}{float(torch.stack(overlaps).mean()):>11.3f}"
            f"{float(torch.stack(cosines).mean()):>9.3f}{best:>10.3f}{time.perf_counter() - t0:>7.1f}"
        )


if __name__ == "__main__":
    main()
