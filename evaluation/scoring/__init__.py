"""Automatic scores of descriptions, stored per description (``description_score`` rows).

Two scorers, in the spirit of OpenAI's explain/simulate and delphi's detection scorers:

- **simulation**: from the description alone (its ``inputs`` and ``pattern`` sentences), an LLM
  picks, for salient source tokens of the head, which of several candidates the head maps each
  one to: the true top mapping plus distractors drawn from other heads' top mappings of the same
  model (seeded, shuffled). Score = (accuracy - chance) / (1 - chance): 1 is perfect, 0 is
  guessing, negative is worse than guessing. Sources are *held out* when the description's
  stored prompt did not show them (a row ``"token" ->`` absent from ``rendered_prompt``); when
  every stored source was shown (the default: ``describe`` shows all of them) the lowest-ranked
  shown sources are used instead and ``details["holdout"]`` says ``"shown"``. Analyse with more
  ``--top-tokens`` than the prompt showed to get truly unseen sources.
- **operation_agreement**: for heads whose best operation score is at least ``threshold``
  (positives) and a seeded sample of heads that score below ``control_max`` on an operation
  (controls), an LLM judges with a fixed rubric whether the description names that operation.
  Per description the score is 1 when the judgement agrees with the static score (named for a
  positive, not named for a control), else 0; over the model, precision = positives judged
  named / all judged named, recall = positives judged named / positives judged.

An answer that is not the JSON asked for gets one repair request; if that fails too, the
score is stored as null with the raw text and the error in ``details``. Answers come through
the describer's LLM stack with its response cache, so a re-run sends nothing it sent before.

The parts: ``settings`` (scorer names, ``ScoringSettings``), ``asker`` (JSON answers from the
LLM), ``simulation`` and ``operation_agreement`` (what each scorer asks about), ``scorer`` (the
run that asks and stores) and ``summary`` (what the stored scores add up to).
"""

from evaluation.scoring.asker import SCORING_PARAMS, Answer, Asker
from evaluation.scoring.operation_agreement import AgreementAnswer, agreement_plan
from evaluation.scoring.scorer import Scorer, score_descriptions
from evaluation.scoring.settings import OPERATION_AGREEMENT, SCORERS, SIMULATION, ScoringSettings
from evaluation.scoring.simulation import SimulationAnswer, distractor_pool, shown_sources, simulation_items
from evaluation.scoring.summary import AgreementSummary, ScoringSummary, SimulationSummary, summarize

__all__ = [
    "OPERATION_AGREEMENT",
    "SCORERS",
    "SCORING_PARAMS",
    "SIMULATION",
    "AgreementAnswer",
    "AgreementSummary",
    "Answer",
    "Asker",
    "Scorer",
    "ScoringSettings",
    "ScoringSummary",
    "SimulationAnswer",
    "SimulationSummary",
    "agreement_plan",
    "distractor_pool",
    "shown_sources",
    "simulation_items",
    "score_descriptions",
    "summarize",
]
