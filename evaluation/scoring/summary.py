"""Summaries of the stored scores of a model's descriptions by one judging LLM: the mean
simulation score (overall, on unseen sources, per describer) and operation agreement's
confusion counts with precision and recall; ``ScoringSummary`` is what ``headmaps evaluate
descriptions --json`` prints."""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel
from sqlalchemy import select

from evaluation.scoring.settings import OPERATION_AGREEMENT, SIMULATION
from store import Store
from store import tables as S


class SimulationSummary(BaseModel):
    scored: int
    """Descriptions with a simulation score."""
    failed: int
    """Descriptions whose simulator answer could not be parsed (score null, raw text kept)."""
    mean: float | None
    unseen: int
    """Scored on sources the description's prompt did not show."""
    mean_unseen: float | None
    by_describer: dict[str, float | None]
    """``prompt_name / llm_model`` of the description -> mean score."""


class AgreementSummary(BaseModel):
    threshold: float
    positives: int
    controls: int
    failed: int
    true_positives: int
    """Positives judged to name their operation."""
    false_positives: int
    """Controls judged to name the operation they score low on."""
    false_negatives: int
    true_negatives: int
    precision: float | None
    recall: float | None


class ScoringSummary(BaseModel):
    """What ``headmaps evaluate descriptions --json`` prints: the stored scores of the model by
    this judging LLM, and this run's usage."""

    model: str
    llm_model: str
    simulation: SimulationSummary
    operation_agreement: AgreementSummary
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    errors: int = 0
    """Requests that failed for good (nothing stored; a re-run retries them)."""
    seconds: float = 0.0


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(store: Store, model: str, llm_model: str, threshold: float = 0.3) -> ScoringSummary:
    """Summaries of the stored scores of ``model``'s descriptions by ``llm_model``."""
    rows = store.description_scores(model, llm_model=llm_model)
    simulation = [r for r in rows if r.scorer == SIMULATION]
    ok = [r for r in simulation if r.score is not None]
    with store.read() as session:
        ids = list({r.description_id for r in ok})
        made_by = {
            i: f"{p} / {m}"
            for i, p, m in session.execute(
                select(S.Description.id, S.Description.prompt_name, S.Description.llm_model).where(
                    S.Description.id.in_(ids)
                )
            )
        }
    describer: dict[str, list[float]] = defaultdict(list)
    for r in ok:
        describer[made_by[r.description_id]].append(r.score)
    unseen = [r.score for r in ok if r.details.get("holdout") == "unseen"]
    agreement = [r for r in rows if r.scorer == OPERATION_AGREEMENT]
    judged = [r for r in agreement if r.score is not None]
    counts = {
        (role, named): sum(
            r.details.get("role") == role and bool(r.details.get("names_operation")) == named for r in judged
        )
        for role in ("positive", "control")
        for named in (True, False)
    }
    tp, fn = counts[("positive", True)], counts[("positive", False)]
    fp, tn = counts[("control", True)], counts[("control", False)]
    return ScoringSummary(
        model=model,
        llm_model=llm_model,
        simulation=SimulationSummary(
            scored=len(ok),
            failed=len(simulation) - len(ok),
            mean=_mean([r.score for r in ok]),
            unseen=len(unseen),
            mean_unseen=_mean(unseen),
            by_describer={k: _mean(v) for k, v in sorted(describer.items())},
        ),
        operation_agreement=AgreementSummary(
            threshold=threshold,
            positives=tp + fn,
            controls=fp + tn,
            failed=sum(r.score is None for r in agreement),
            true_positives=tp,
            false_positives=fp,
            false_negatives=fn,
            true_negatives=tn,
            precision=tp / (tp + fp) if tp + fp else None,
            recall=tp / (tp + fn) if tp + fn else None,
        ),
    )
