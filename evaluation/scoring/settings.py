"""What the scorers are called and how they are configured: the scorer names stored with each
score, ``ScoringSettings`` (recorded with the evaluate run) and the seeded randomness both
scorers draw from."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SIMULATION = "simulation"
OPERATION_AGREEMENT = "operation_agreement"
SCORERS = (SIMULATION, OPERATION_AGREEMENT)
Holdout = Literal["unseen", "shown"]
HOLDOUTS: tuple[Holdout, ...] = ("unseen", "shown")
"""What ``--holdout`` takes: simulate on salient sources the description's prompt did not show
(the honest test, the default) or on ones it showed (a description can be right about those by
restating its prompt)."""


class ScoringSettings(BaseModel):
    """How descriptions are scored; recorded with the evaluate run."""

    model_config = ConfigDict(extra="forbid")

    n_items: int = Field(5, ge=1, le=20)
    """Source tokens asked about per description (simulation)."""
    holdout: Holdout = "unseen"
    """Simulate on sources the description's prompt did not show (``unseen``) or did
    (``shown``). A description without such a source is not simulated; the summary counts it."""
    n_candidates: int = Field(4, ge=2, le=10)
    """Candidates per source: the true top mapping and ``n_candidates - 1`` distractors."""
    threshold: float = Field(0.3, ge=0.0, le=1.0)
    """A head whose best relation score reaches this is a positive for that operation."""
    control_max: float = Field(0.1, ge=0.0, le=1.0)
    """A control head scores below this on the operation it is asked about."""
    controls: float = Field(1.0, ge=0.0)
    """Control descriptions sampled per positive one (precision needs some)."""
    seed: int = 0
    """Seeds distractors, shuffling and the control sample, per description."""


def seeded_rng(settings: ScoringSettings, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (settings.seed, *parts)))  # str seeds are stable
