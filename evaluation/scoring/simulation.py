"""The simulation scorer's items: which salient sources of a head are asked about, and the
seeded distractors drawn from other heads' top mappings that each true mapping is shuffled
among.

Which sources: by default (``holdout="unseen"``) only ones the description's prompt did not
show, so a description cannot score by restating its prompt; ``holdout="shown"`` asks about
shown ones instead. A description with no source of the kind asked for is skipped with a
reason (``SKIP_REASONS``), never simulated on the other kind.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evaluation.scoring.settings import Holdout, ScoringSettings, seeded_rng
from store.records import DescriptionOut, HeadView

NO_SOURCES = "no_sources"
NO_UNSEEN = "no_unseen"
NO_SHOWN = "no_shown"
NO_DISTRACTORS = "no_distractors"
SKIP_REASONS = {
    NO_SOURCES: "the head has no stored salient source with mappings",
    NO_UNSEEN: "its prompt showed every stored source (an analysis stored with no more sources than "
    "the prompt shows)",
    NO_SHOWN: "its prompt showed none of the stored sources",
    NO_DISTRACTORS: "no other head's mapping to draw distractors from",
}
"""Why a description was not simulated, by the reason key the summary counts."""


class SimulationAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answers: list[int] = Field(max_length=50)
    """One candidate number (1-based) per item, in order."""


@dataclass
class SimulationPlan:
    """What one description is simulated on: ``items``, or why not (``skipped``)."""

    holdout: Holdout
    items: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None
    """A ``SKIP_REASONS`` key; None when there are items."""


def _token_literal(token: str) -> str:
    return json.dumps(token, ensure_ascii=False)  # as the templates' ``tok`` filter writes it


def shown_sources(rendered_prompt: str, tokens: list[str]) -> set[str]:
    """Which of ``tokens`` the description's prompt showed as a source row (``"tok" -> …``).
    For a prompt with no such rows (a user template), any mention counts as shown."""
    if "->" not in rendered_prompt:
        return {t for t in tokens if _token_literal(t) in rendered_prompt}
    return {
        t
        for t in tokens
        if re.search(rf"^\s*{re.escape(_token_literal(t))}\s*->", rendered_prompt, flags=re.MULTILINE)
    }


def simulation_items(
    description: DescriptionOut, view: HeadView, pool: list[str], settings: ScoringSettings
) -> SimulationPlan:
    """The items asked about under ``settings.holdout``: the highest-ranked unseen sources, or
    the lowest-ranked shown ones (the least prominent in the prompt).

    ``pool``: sorted top mappings of the model's other heads, where distractors come from."""
    holdout = settings.holdout
    sources = [s for s in view.salient if s.mappings]
    if not sources:
        return SimulationPlan(holdout, skipped=NO_SOURCES)
    shown = shown_sources(description.rendered_prompt, [s.token for s in sources])
    if holdout == "unseen":
        chosen = [s for s in sources if s.token not in shown][: settings.n_items]
    else:
        chosen = [s for s in sources if s.token in shown][-settings.n_items :]
    if not chosen:
        return SimulationPlan(holdout, skipped=NO_UNSEEN if holdout == "unseen" else NO_SHOWN)
    items = []
    for s in chosen:
        truth = s.mappings[0].token
        own = {m.token for m in s.mappings} | {s.token}
        rng = seeded_rng(settings, description.id, s.rank)
        others = [t for t in pool if t not in own]
        distractors = rng.sample(others, min(settings.n_candidates - 1, len(others)))
        if not distractors:
            continue
        candidates = [truth, *distractors]
        rng.shuffle(candidates)
        items.append({"source": s.token, "rank": s.rank, "truth": truth, "candidates": candidates})
    return SimulationPlan(holdout, items, None if items else NO_DISTRACTORS)


def distractor_pool(views: list[HeadView], exclude: tuple[int, int]) -> list[str]:
    return sorted(
        {s.mappings[0].token for v in views if (v.layer, v.head) != exclude for s in v.salient if s.mappings}
    )
