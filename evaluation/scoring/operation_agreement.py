"""The operation-agreement scorer's plan: the positives (heads whose best operation score
reaches the threshold) and a seeded sample of controls (heads scoring low on a positive's
operation), the judge's answer schema, and whether a description's prompt showed operations.

A description written from a prompt that listed the head's operation scores (``facts``,
``salient_evidence``) can name its operation by copying it: agreement on those is circular, so
each score records whether its description's prompt showed any operation the scorer asks
about, and the summary reports the two groups apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

import prompts
from describer.errors import HeadmapsError
from describer.maps.relations import operation_label
from evaluation.scoring.settings import ScoringSettings, seeded_rng
from store.records import DescriptionOut, HeadView

BLIND = "prompt did not show operations"
SHOWN = "prompt showed operations (circular)"
"""The two groups operation agreement is reported in."""


class AgreementAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    names_operation: bool
    justification: str = Field("", max_length=1000)


def agreement_plan(
    pairs: list[tuple[DescriptionOut, HeadView]], settings: ScoringSettings, model: str
) -> list[tuple[DescriptionOut, str, str, float]]:
    """(description, role, operation, its relation score) for positives and controls."""
    s = settings
    plan, rest = [], []
    for d, v in pairs:
        top = v.operations[0] if v.operations else None
        if top is not None and top.relation >= s.threshold:
            plan.append((d, "positive", top.name, top.relation))
        else:
            rest.append((d, v))
    wanted = round(s.controls * len(plan))
    operations = sorted({op for _, _, op, _ in plan})
    rng = seeded_rng(s, "controls", model)
    rng.shuffle(rest)
    controls = []
    for i, (d, v) in enumerate(rest):
        if len(controls) >= wanted:
            break
        # Each control is asked about a positive's operation it scores low on, in turn.
        relation = {o.name: o.relation for o in v.operations}
        for op in operations[i % max(len(operations), 1) :] + operations[: i % max(len(operations), 1)]:
            if relation.get(op, 0.0) < s.control_max:
                controls.append((d, "control", op, relation.get(op, 0.0)))
                break
    return plan + controls


def operations_in_prompt(rendered_prompt: str, operations: Iterable[str], prompt_name: str = "") -> list[str]:
    """Which of ``operations`` a description's stored prompt names: by name
    (``country_to_capital``, as operation scores are listed) or by label (``country → capital``,
    as relation facts state them), each as a whole word. Lines that are the template's own text
    (``prompt_name``'s source has them verbatim: instructions, worked examples) are not this
    head's evidence and are not searched, so an operation named like an ordinary word
    ("capital") is not found in the instructions of every prompt."""
    static = _template_lines(prompt_name)
    evidence = "\n".join(line for line in rendered_prompt.splitlines() if line.strip() not in static)
    found = []
    for name in sorted(set(operations)):
        for text in {name, operation_label(name)}:
            if re.search(rf"(?<!\w){re.escape(text)}(?!\w)", evidence):
                found.append(name)
                break
    return found


@lru_cache(maxsize=32)
def _template_lines(prompt_name: str) -> frozenset[str]:
    """The non-blank lines of a template's source, stripped; none when it cannot be read (a
    user template moved away): then the whole prompt is searched."""
    try:
        source = prompts.load(prompt_name).path.read_text(encoding="utf-8") if prompt_name else ""
    except (HeadmapsError, OSError):
        return frozenset()
    return frozenset(line.strip() for line in source.splitlines() if line.strip())
