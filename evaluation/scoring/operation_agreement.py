"""The operation-agreement scorer's plan: the positives (heads whose best operation score
reaches the threshold) and a seeded sample of controls (heads scoring low on a positive's
operation), and the judge's answer schema."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from evaluation.scoring.settings import ScoringSettings, seeded_rng
from store.records import DescriptionOut, HeadView


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
