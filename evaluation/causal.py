"""The paper's causal experiment: does removing the heads MAPS ranks highest break the task?

The model is asked to do an operation few-shot: for a pair (X, Y) the prompt is ``n_shots``
demonstrations from *other* pairs of the same operation, then X,

    " France: Paris\\n Japan: Tokyo\\n Peru: Lima\\n Germany:"

built from token ids (every source and target is the single leading-space token the static
analysis scores, so all prompts have one length), and it is right when its next token (argmax
at the last position) is Y's token. The top-m heads by static relation score are zero-ablated
at the last position, cumulatively for m = 0..M, and the accuracy is compared with ablating m
random heads (drawn from the heads outside the top M, mean over seeds) and with a control
operation's accuracy under the same top-m ablation.
"""

from __future__ import annotations

import csv
import io
import random
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from pydantic import BaseModel
from torch import Tensor

from describer.maps.adapters.base import Adapter
from describer.maps.operations import TokenizedOperation
from evaluation.hooks import head_hooks, run_captured

Progress = Callable[[str, int, int], None]


class CausalPoint(BaseModel):
    m: int
    """Heads ablated."""
    heads: list[str]
    """The top-m heads by static score, as ``layer.head``."""
    accuracy_top: float
    accuracy_random: float
    """Mean over seeds of the accuracy with m random heads ablated."""
    accuracy_random_std: float
    accuracy_control: float
    """The control operation's accuracy with the top-m heads ablated."""


class CausalResult(BaseModel):
    model: str
    operation: str
    control: str
    n_prompts: int
    n_control_prompts: int
    n_shots: int
    seeds: int
    points: list[CausalPoint]


def fewshot_prompts(
    tokenizer: object, op: TokenizedOperation, n_shots: int = 3, max_prompts: int | None = 50, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Token ids ``[N, T]`` of the few-shot prompts and the target token of each."""
    if op.n_pairs < n_shots + 1:
        raise ValueError(
            f"operation {op.operation.name!r} has {op.n_pairs} pairs; need at least {n_shots + 1}"
        )
    rng = random.Random(seed)
    colon = tokenizer.encode(":", add_special_tokens=False)  # type: ignore[attr-defined]
    newline = tokenizer.encode("\n", add_special_tokens=False)  # type: ignore[attr-defined]
    bos = getattr(tokenizer, "bos_token_id", None)
    start = tokenizer.encode("", add_special_tokens=True)  # type: ignore[attr-defined]
    start = start if bos is not None and start == [bos] else []
    order = list(range(op.n_pairs))
    rng.shuffle(order)
    chosen = order[: max_prompts or op.n_pairs]
    rows, targets = [], []
    for i in chosen:
        demos = rng.sample([j for j in range(op.n_pairs) if j != i], n_shots)
        ids = list(start)
        for j in demos:
            ids += [op.source_ids[j], *colon, op.target_ids[j], *newline]
        rows.append([*ids, op.source_ids[i], *colon])
        targets.append(op.target_ids[i])
    return torch.tensor(rows, dtype=torch.long), torch.tensor(targets, dtype=torch.long)


@torch.inference_mode()
def accuracy(
    model: torch.nn.Module,
    adapter: Adapter,
    ids: Tensor,
    targets: Tensor,
    ablate: Sequence[tuple[int, int]] = (),
    batch_size: int = 32,
) -> float:
    """Fraction of prompts whose argmax next token is the target, with ``ablate`` zeroed at the
    last position."""
    device = adapter.embedding_module().weight.device
    right = 0
    for start in range(0, len(ids), batch_size):
        with head_hooks(adapter, ablate=ablate):
            logits = run_captured(model, ids[start : start + batch_size].to(device))
        right += int((logits.argmax(-1).cpu() == targets[start : start + batch_size]).sum())
    return right / len(ids)


def run_causal(
    loaded: object,
    op: TokenizedOperation,
    control: TokenizedOperation,
    static_scores: list[list[float]],
    *,
    max_heads: int = 8,
    seeds: int = 3,
    n_shots: int = 3,
    max_prompts: int | None = 50,
    progress: Progress | None = None,
) -> CausalResult:
    model, adapter = loaded.model, loaded.adapter  # type: ignore[attr-defined]
    ids, targets = fewshot_prompts(loaded.tokenizer, op, n_shots, max_prompts)  # type: ignore[attr-defined]
    c_ids, c_targets = fewshot_prompts(loaded.tokenizer, control, n_shots, max_prompts)  # type: ignore[attr-defined]
    ranked = sorted(
        ((layer, head) for layer, row in enumerate(static_scores) for head in range(len(row))),
        key=lambda lh: (-static_scores[lh[0]][lh[1]], lh),
    )
    max_heads = min(max_heads, len(ranked))
    top, rest = ranked[:max_heads], ranked[max_heads:]
    points = []
    for m in range(max_heads + 1):
        chosen = top[:m]
        random_acc = [
            accuracy(model, adapter, ids, targets, random.Random(1000 + s).sample(rest, min(m, len(rest))))
            for s in range(seeds)
        ]
        points.append(
            CausalPoint(
                m=m,
                heads=[f"{layer}.{head}" for layer, head in chosen],
                accuracy_top=accuracy(model, adapter, ids, targets, chosen),
                accuracy_random=statistics.fmean(random_acc),
                accuracy_random_std=statistics.pstdev(random_acc),
                accuracy_control=accuracy(model, adapter, c_ids, c_targets, chosen),
            )
        )
        if progress:
            progress("ablations", m + 1, max_heads + 1)
    return CausalResult(
        model=loaded.name,  # type: ignore[attr-defined]
        operation=op.operation.name,
        control=control.operation.name,
        n_prompts=len(ids),
        n_control_prompts=len(c_ids),
        n_shots=n_shots,
        seeds=seeds,
        points=points,
    )


def to_csv(result: CausalResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["m", "heads", "accuracy_top", "accuracy_random", "accuracy_random_std", "accuracy_control"]
    )
    for p in result.points:
        writer.writerow(
            [
                p.m,
                " ".join(p.heads),
                p.accuracy_top,
                p.accuracy_random,
                p.accuracy_random_std,
                p.accuracy_control,
            ]
        )
    return buffer.getvalue()


def plot(result: CausalResult, path: Path) -> None:
    import matplotlib  # only the plot needs it, and it takes a second to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the non-interactive backend

    m = [p.m for p in result.points]
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    ax.plot(m, [p.accuracy_top for p in result.points], "o-", label=f"{result.operation}: top-m heads")
    rnd = [p.accuracy_random for p in result.points]
    std = [p.accuracy_random_std for p in result.points]
    ax.plot(m, rnd, "s--", label=f"{result.operation}: random heads ({result.seeds} seeds)")
    ax.fill_between(
        m,
        [a - s for a, s in zip(rnd, std, strict=True)],
        [a + s for a, s in zip(rnd, std, strict=True)],
        alpha=0.2,
    )
    ax.plot(
        m, [p.accuracy_control for p in result.points], "^:", label=f"control {result.control}: top-m heads"
    )
    ax.set_xlabel("heads ablated (m)")
    ax.set_ylabel("accuracy (next token)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{result.model}: ablating {result.operation} heads", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
