"""Summaries of the stored scores of a model's descriptions by one judging LLM; ``ScoringSummary``
is what ``headmaps evaluate descriptions --json`` prints.

Nothing is pooled that could flatter itself:

- simulation is summarised for one kind of source only (``holdout``: ``unseen`` by default),
  and counts the descriptions it could not simulate on that kind, by reason;
- operation agreement is reported in two groups: descriptions whose prompt did not show any
  operation the scorer asks about (``operation_agreement``, the number to quote) and those
  whose prompt did (``operation_agreement_shown``: circular, a description can copy the name).
  Scores stored before the group was recorded are grouped by reading their description's
  stored prompt now (``inferred`` counts them), so every score lands in one group.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from evaluation.scoring.described import Described, described_heads
from evaluation.scoring.operation_agreement import BLIND, SHOWN, operations_in_prompt
from evaluation.scoring.settings import OPERATION_AGREEMENT, SIMULATION, Holdout, ScoringSettings
from evaluation.scoring.simulation import distractor_pool, simulation_items
from store import Store
from store import tables as S
from store.records import DescriptionScoreOut


class SimulationSummary(BaseModel):
    holdout: Holdout
    """The sources every score below was simulated on: ``unseen`` (ones the description's
    prompt did not show) or ``shown``; scores of the other kind are left out, never mixed."""
    scored: int
    """Descriptions with a simulation score of this holdout."""
    failed: int
    """Descriptions whose simulator answer could not be parsed (score null, raw text kept)."""
    mean: float | None
    by_describer: dict[str, float | None]
    """``prompt_name / llm_model`` of the description -> mean score."""
    skipped: dict[str, int] = {}
    """The model's descriptions not simulated under this holdout (all of them, whatever a run's
    ``limit``), by reason (``simulation.SKIP_REASONS``):
    ``no_unseen`` for a prompt that showed every stored source (an analysis stored with no
    more sources than the prompt shows)."""
    other_holdout: int = 0
    """Stored simulation scores of the other holdout (a run with the other ``--holdout``), left out."""


class AgreementSummary(BaseModel):
    group: str
    """Which descriptions: ``prompt did not show operations`` or ``prompt showed operations
    (circular)``."""
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
    by_prompt: dict[str, int] = {}
    """Description prompt template -> scores in this group."""
    inferred: int = 0
    """Scores stored before the group was recorded with them, grouped now from the stored prompt."""


class ScoringSummary(BaseModel):
    """What ``headmaps evaluate descriptions --json`` prints: the stored scores of the model by
    this judging LLM, and this run's usage."""

    model: str
    llm_model: str
    simulation: SimulationSummary
    operation_agreement: AgreementSummary
    """Only descriptions whose prompt showed no operation the scorer asks about (``salient``, or
    a head with no operation score worth showing): the agreement to quote."""
    operation_agreement_shown: AgreementSummary
    """Descriptions whose prompt showed an operation's name or label (``facts``,
    ``salient_evidence``): circular, reported apart."""
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    errors: int = 0
    """Requests that failed for good (nothing stored; a re-run retries them)."""
    seconds: float = 0.0


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(
    store: Store,
    model: str,
    llm_model: str,
    threshold: float = 0.3,
    holdout: Holdout = "unseen",
    described: Described | None = None,
) -> ScoringSummary:
    """Summaries of the stored scores of ``model``'s descriptions by ``llm_model``; simulation
    on ``holdout`` sources. ``described``: the model's described heads, when already loaded."""
    rows = store.description_scores(model, llm_model=llm_model)
    agreement = [r for r in rows if r.scorer == OPERATION_AGREEMENT]
    unknown = {r.description_id for r in agreement if "prompt_showed_operations" not in r.details}
    simulated = {r.description_id for r in rows if r.scorer == SIMULATION}
    made: dict[int, tuple[str, str, str]] = {}  # id -> prompt name, LLM, rendered prompt (or "")
    with store.read() as session:
        for i, p, m, text in session.execute(
            select(
                S.Description.id,
                S.Description.prompt_name,
                S.Description.llm_model,
                S.Description.rendered_prompt,
            ).where(S.Description.id.in_(unknown | simulated | {r.description_id for r in agreement}))
        ):
            made[i] = (p, m, text if i in unknown else "")
    asked = {r.details["operation"] for r in agreement if r.details.get("operation")}

    def showed(r: DescriptionScoreOut) -> bool:
        if "prompt_showed_operations" in r.details:
            return bool(r.details["prompt_showed_operations"])
        prompt_name, _, text = made[r.description_id]
        return bool(operations_in_prompt(text, asked, prompt_name))

    groups: dict[bool, list[DescriptionScoreOut]] = {False: [], True: []}
    for r in agreement:
        groups[showed(r)].append(r)
    return ScoringSummary(
        model=model,
        llm_model=llm_model,
        simulation=_simulation(store, model, rows, made, holdout, described),
        operation_agreement=_agreement(BLIND, groups[False], threshold, made),
        operation_agreement_shown=_agreement(SHOWN, groups[True], threshold, made),
    )


def _simulation(
    store: Store,
    model: str,
    rows: list[DescriptionScoreOut],
    made: dict[int, tuple[str, str, str]],
    holdout: Holdout,
    described: Described | None,
) -> SimulationSummary:
    simulation = [r for r in rows if r.scorer == SIMULATION]
    # Scores stored before ``holdout`` was recorded were all chosen as "unseen" when possible,
    # and said so: every stored simulation score has the key.
    mine = [r for r in simulation if r.details.get("holdout") == holdout]
    ok = [r for r in mine if r.score is not None]
    describer: dict[str, list[float]] = defaultdict(list)
    for r in ok:
        prompt_name, llm, _ = made[r.description_id]
        describer[f"{prompt_name} / {llm}"].append(r.score)
    views, pairs = described if described is not None else described_heads(store, model)
    settings = ScoringSettings(holdout=holdout)
    skipped: Counter[str] = Counter()
    for d, v in pairs:
        reason = simulation_items(d, v, distractor_pool(views, (v.layer, v.head)), settings).skipped
        if reason is not None:
            skipped[reason] += 1
    return SimulationSummary(
        holdout=holdout,
        scored=len(ok),
        failed=len(mine) - len(ok),
        mean=_mean([r.score for r in ok]),
        by_describer={k: _mean(v) for k, v in sorted(describer.items())},
        skipped=dict(sorted(skipped.items())),
        other_holdout=len(simulation) - len(mine),
    )


def _agreement(
    group: str, rows: list[DescriptionScoreOut], threshold: float, made: dict[int, tuple[str, str, str]]
) -> AgreementSummary:
    judged = [r for r in rows if r.score is not None]
    counts = {
        (role, named): sum(
            r.details.get("role") == role and bool(r.details.get("names_operation")) == named for r in judged
        )
        for role in ("positive", "control")
        for named in (True, False)
    }
    tp, fn = counts[("positive", True)], counts[("positive", False)]
    fp, tn = counts[("control", True)], counts[("control", False)]
    by_prompt: Counter[Any] = Counter(
        r.details.get("description_prompt") or made[r.description_id][0] for r in rows
    )
    return AgreementSummary(
        group=group,
        threshold=threshold,
        positives=tp + fn,
        controls=fp + tn,
        failed=sum(r.score is None for r in rows),
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        true_negatives=tn,
        precision=tp / (tp + fp) if tp + fp else None,
        recall=tp / (tp + fn) if tp + fn else None,
        by_prompt=dict(sorted(by_prompt.items())),
        inferred=sum("prompt_showed_operations" not in r.details for r in rows),
    )
