"""The fixed vocabularies other packages share: rating labels and description categories."""

from __future__ import annotations

RATING_LABELS: tuple[str, ...] = ("plausible", "partially_plausible", "not_plausible", "cannot_tell")
"""The rating scale, best first. It follows the MAPS paper's human study, which asked whether a
description is plausible given the head's mappings."""

RATING_MEANINGS: dict[str, str] = {
    "plausible": "the description fits the head's mappings",
    "partially_plausible": "the description fits some of the mappings but misses or misstates others",
    "not_plausible": "the description does not fit the head's mappings",
    "cannot_tell": "the mappings are too noisy or unfamiliar to judge the description",
}

CATEGORIES: tuple[str, ...] = (
    "knowledge_recalling",
    "in_context_identification",
    "latent_reasoning",
    "expression_preparation",
    "unclear",
)
"""What a head contributes, after the four stages of the attention-head survey (Zheng et al.
2024), plus ``unclear`` for heads whose mappings show no pattern."""

CATEGORY_MEANINGS: dict[str, str] = {
    "knowledge_recalling": "retrieves stored knowledge: facts, associations, word meanings",
    "in_context_identification": "finds structure in the context: copying, names, positions, syntax",
    "latent_reasoning": "combines information: relations, arithmetic, analogies, translation",
    "expression_preparation": "shapes the output: tense, morphology, formatting, next-token form",
    "unclear": "no consistent pattern in the mappings",
}

DESCRIPTION_STATUSES: tuple[str, ...] = ("ok", "unclear", "failed")
"""``ok``: parsed; ``unclear``: parsed, the LLM found no pattern; ``failed``: raw text kept, no parse."""

RUN_KINDS: tuple[str, ...] = ("analyze", "describe", "evaluate")
RUN_STATUSES: tuple[str, ...] = ("running", "done", "failed", "interrupted")
OPERATION_ORIGINS: tuple[str, ...] = ("builtin", "user")
