"""The MAPS paper's validation experiments as jobs: a model and operations in, the result out;
the correlation table is also recorded in the store as a finished ``evaluate`` run (the report
and the web app show the newest one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from describer.analyze import model_info
from describer.errors import HeadmapsError
from describer.maps.analyzer import Analyzer, Progress
from describer.maps.jobs import Warn, pick_device, settings_for, tokenize_all
from describer.maps.loading import LoadedModel, load_model
from describer.maps.operations import Operation
from describer.maps.settings import AnalysisSettings, SourceChoice
from evaluation.causal import CausalResult, run_causal
from evaluation.correlation import CorrelationResult, run_correlation
from evaluation.correlation_stats import CSV_COLUMNS, MEDIANS
from store import Store

ROW_KEYS = tuple(column for column in CSV_COLUMNS if column != "k")
"""The columns of a correlation row that the JSON output and the stored run keep."""


def _load(
    model: str | None, device: str, choice: SourceChoice | None
) -> tuple[LoadedModel, AnalysisSettings]:
    loaded = load_model(model, device=pick_device(device))
    return loaded, settings_for(loaded, choice)


def correlation_experiment(
    model: str | None,
    operations: Sequence[Operation],
    *,
    k: int | None = None,
    choice: SourceChoice | None = None,
    device: str = "auto",
    max_pairs: int | None = 50,
    batch_size: int = 64,
    progress: Progress | None = None,
    warn: Warn = print,
    strict: bool = False,
) -> tuple[LoadedModel, CorrelationResult]:
    """Static vs dynamic scores of every head on each operation (``run_correlation``). With
    ``strict`` (a user's own operations) an operation without usable pairs is an error, else it
    is skipped with a warning."""
    loaded, settings = _load(model, device, choice)
    tokenized = tokenize_all(operations, loaded, k, warn, strict=strict or len(operations) == 1)
    result, _, _ = run_correlation(
        loaded, tokenized, settings, max_pairs=max_pairs, batch_size=batch_size, progress=progress
    )
    return loaded, result


def correlation_payload(result: CorrelationResult) -> dict[str, Any]:
    """The rows and medians, as ``evaluate correlation --json`` prints and the store keeps them."""
    return {
        "rows": [row.model_dump(include=set(ROW_KEYS)) for row in result.rows],
        **{f"median_{name}": getattr(result, f"median_{name}") for name in MEDIANS},
    }


def record_correlation(
    store: Store, loaded: LoadedModel, result: CorrelationResult, operations: str, max_pairs: int
) -> int:
    """Store the table as a finished ``evaluate`` run of the model; returns the run id."""
    store.register_model(model_info(loaded))
    run_id = store.start_run(
        "evaluate",
        loaded.name,
        {
            "experiment": "correlation",
            "operations": operations,
            "max_pairs": max_pairs,
            **{key: value for key, value in result.settings.items() if key != "device"},
        },
    )
    store.finish_run(run_id, "done", counts=correlation_payload(result))
    return run_id


def causal_experiment(
    model: str | None,
    operation: Operation,
    control: Operation,
    *,
    k: int | None = None,
    choice: SourceChoice | None = None,
    device: str = "auto",
    max_heads: int = 8,
    seeds: int = 3,
    n_shots: int = 3,
    max_prompts: int = 50,
    progress: Progress | None = None,
    warn: Warn = print,
) -> CausalResult:
    """Ablate the operation's top heads by static score (``run_causal``)."""
    loaded, settings = _load(model, device, choice)
    tok_op, tok_ctl = tokenize_all([operation, control], loaded, k, warn, strict=True)
    analyzer = Analyzer(loaded.adapter, loaded.tokenizer, settings, device=loaded.model.device)
    _, (scores,) = analyzer.analyze([tok_op], with_salient=False, progress=progress)
    try:
        return run_causal(
            loaded,
            tok_op,
            tok_ctl,
            scores.scores,
            max_heads=max_heads,
            seeds=seeds,
            n_shots=n_shots,
            max_prompts=max_prompts,
            progress=progress,
        )
    except ValueError as exc:
        raise HeadmapsError(str(exc)) from exc
