"""Automatic scores of descriptions, stored per description (``description_score`` rows).

Two scorers, in the spirit of OpenAI's explain/simulate and delphi's detection scorers:

- **simulation**: from the description alone (its ``inputs`` and ``pattern`` sentences), an LLM
  picks, for salient source tokens of the head, which of several candidates the head maps each
  one to: the true top mapping plus distractors drawn from other heads' top mappings of the same
  model (seeded, shuffled). Score = (accuracy - chance) / (1 - chance): 1 is perfect, 0 is
  guessing, negative is worse than guessing. By default (``holdout="unseen"``) it asks only
  about sources the description's stored prompt did not show (a row ``"token" ->`` absent from
  ``rendered_prompt``): analysis stores ``STORED_SOURCES`` (20) salient sources and prompts show
  the first ``SHOWN_SOURCES`` (15), so the last 5 test whether the description generalises
  rather than restates its prompt. ``holdout="shown"`` asks about shown ones instead. A
  description with no source of the kind asked for (an analysis stored with only as many
  sources as the prompt shows) is not simulated; the summary counts it (``no_unseen``), and
  each score's ``details["holdout"]`` says which kind it is.
- **operation_agreement**: for heads whose best operation score is at least ``threshold``
  (positives) and a seeded sample of heads that score below ``control_max`` on an operation
  (controls), an LLM judges with a fixed rubric whether the description names that operation.
  Per description the score is 1 when the judgement agrees with the static score (named for a
  positive, not named for a control), else 0; over the model, precision = positives judged
  named / all judged named, recall = positives judged named / positives judged. A description
  whose prompt listed operation names (``facts``, ``salient_evidence``) can agree by copying
  them, so each score records its description's prompt template and whether that prompt
  showed any operation the run asks about, and the summary reports the two groups apart.

An answer that is not the JSON asked for gets one repair request; if that fails too, the
score is stored as null with the raw text and the error in ``details``. Answers come through
the describer's LLM stack with its response cache, so a re-run sends nothing it sent before.

The parts: ``settings`` (scorer names, ``ScoringSettings``), ``asker`` (JSON answers from the
LLM), ``described`` (the heads and descriptions scored), ``simulation`` and
``operation_agreement`` (what each scorer asks about), ``scorer`` (the run that asks and stores)
and ``summary`` (what the stored scores add up to).
"""

from evaluation.scoring.asker import SCORING_PARAMS, Answer, Asker
from evaluation.scoring.operation_agreement import (
    BLIND,
    SHOWN,
    AgreementAnswer,
    agreement_plan,
    operations_in_prompt,
)
from evaluation.scoring.scorer import Scorer, score_descriptions
from evaluation.scoring.settings import (
    HOLDOUTS,
    OPERATION_AGREEMENT,
    SCORERS,
    SIMULATION,
    Holdout,
    ScoringSettings,
)
from evaluation.scoring.simulation import (
    SKIP_REASONS,
    SimulationAnswer,
    SimulationPlan,
    distractor_pool,
    shown_sources,
    simulation_items,
)
from evaluation.scoring.summary import AgreementSummary, ScoringSummary, SimulationSummary, summarize

__all__ = [
    "BLIND",
    "HOLDOUTS",
    "OPERATION_AGREEMENT",
    "SCORERS",
    "SCORING_PARAMS",
    "SHOWN",
    "SIMULATION",
    "SKIP_REASONS",
    "AgreementAnswer",
    "AgreementSummary",
    "Answer",
    "Asker",
    "Holdout",
    "Scorer",
    "ScoringSettings",
    "ScoringSummary",
    "SimulationAnswer",
    "SimulationPlan",
    "SimulationSummary",
    "agreement_plan",
    "distractor_pool",
    "operations_in_prompt",
    "shown_sources",
    "simulation_items",
    "score_descriptions",
    "summarize",
]
