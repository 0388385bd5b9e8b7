"""The simulation scorer's items: which salient sources of a head are asked about (held out
from the description's prompt where possible), and the seeded distractors drawn from other
heads' top mappings that each true mapping is shuffled among."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evaluation.scoring.settings import ScoringSettings, seeded_rng
from store.records import DescriptionOut, HeadView


class SimulationAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answers: list[int] = Field(max_length=50)
    """One candidate number (1-based) per item, in order."""


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
) -> tuple[list[dict[str, Any]], str]:
    """The items asked about and the holdout kind (``unseen`` or ``shown``).

    ``pool``: sorted top mappings of the model's other heads, where distractors come from."""
    sources = [s for s in view.salient if s.mappings]
    shown = shown_sources(description.rendered_prompt, [s.token for s in sources])
    unseen = [s for s in sources if s.token not in shown]
    if unseen:
        chosen, holdout = unseen[: settings.n_items], "unseen"
    else:
        chosen, holdout = sources[-settings.n_items :], "shown"
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
    return items, holdout


def distractor_pool(views: list[HeadView], exclude: tuple[int, int]) -> list[str]:
    return sorted(
        {s.mappings[0].token for v in views if (v.layer, v.head) != exclude for s in v.salient if s.mappings}
    )
