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
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

import prompts
from describer.errors import HeadmapsError
from describer.llm.client import (
    CachedCaller,
    GenerationParams,
    Messages,
    describe_error,
    extract_json,
    fatal,
)
from store import tables as S
from store import Store
from store.records import DescriptionOut, DescriptionScoreIn, HeadView

SIMULATION = "simulation"
OPERATION_AGREEMENT = "operation_agreement"
SCORERS = (SIMULATION, OPERATION_AGREEMENT)

SCORING_PARAMS = GenerationParams(temperature=0.0, max_tokens=200, structured=False)
"""Short JSON answers; ``structured`` off because the describer's response schema is not ours."""


class ScoringSettings(BaseModel):
    """How descriptions are scored; recorded with the evaluate run."""

    model_config = ConfigDict(extra="forbid")

    n_items: int = Field(5, ge=1, le=20)
    """Source tokens asked about per description (simulation)."""
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


# --- asking an LLM for JSON, with cache, retries and bounded concurrency ---------------------------


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


T = TypeVar("T", bound=BaseModel)

REPAIR = "Your answer could not be used: {error}. Reply again with only the JSON object asked for: {shape}"


@dataclass
class Answer:
    """A validated JSON answer, or why there is none; ``raw`` holds every answer's text."""

    value: Any
    raw: str
    error: str | None
    llm_calls: int


@dataclass
class Asker(CachedCaller):
    """A ``CachedCaller`` that asks for one JSON object and validates it."""

    params: GenerationParams = SCORING_PARAMS

    async def ask_json(self, prompt: str, schema: type[T], check: Any = None, shape: str = "") -> Answer:
        """Ask; parse the first JSON object as ``schema`` (LLM text is untrusted) and ``check``
        it (a callable returning an error or None); on failure ask once more, stating why."""
        messages: Messages = [{"role": "user", "content": prompt}]
        first, calls = await self.complete(messages)
        value, error = _parse(first.text, schema, check)
        if value is not None:
            return Answer(value, first.text, None, calls)
        repair = messages + [
            {"role": "assistant", "content": first.text},
            {"role": "user", "content": REPAIR.format(error=error, shape=shape)},
        ]
        second, more = await self.complete(repair)
        value, second_error = _parse(second.text, schema, check)
        raw = f"{first.text}\n--- repair ---\n{second.text}"
        if value is not None:
            return Answer(value, raw, None, calls + more)
        return Answer(None, raw, f"{error}; after one repair request: {second_error}", calls + more)


def _parse(text: str, schema: type[T], check: Any) -> tuple[T | None, str | None]:
    obj = extract_json(text)
    if obj is None:
        return None, "the answer contains no JSON object"
    try:
        value = schema.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}" for e in exc.errors()[:3]
        )
        return None, f"the JSON does not match ({problems})"
    problem = check(value) if check else None
    return (None, problem) if problem else (value, None)


class SimulationAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answers: list[int] = Field(max_length=50)
    """One candidate number (1-based) per item, in order."""


class AgreementAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    names_operation: bool
    justification: str = Field("", max_length=1000)


# --- what is scored ------------------------------------------------------------------------------


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


def _rng(settings: ScoringSettings, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (settings.seed, *parts)))  # str seeds are stable


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
        rng = _rng(settings, description.id, s.rank)
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


# --- scoring -------------------------------------------------------------------------------------


@dataclass
class Scorer:
    """Scores the descriptions of one model and stores each score as its answer arrives."""

    store: Store
    model: str
    asker: Asker
    settings: ScoringSettings = field(default_factory=ScoringSettings)
    limit: int | None = None
    """Score at most this many descriptions (model order)."""
    errors: int = 0
    last_error: str | None = None

    def _load(self) -> tuple[list[HeadView], list[tuple[DescriptionOut, HeadView]]]:
        summary = self.store.get_model(self.model)
        views = [
            self.store.get_head(self.model, layer, head)
            for layer in range(summary.n_layers)
            for head in range(summary.n_heads)
        ]
        pairs = [(d, v) for v in views for d in v.descriptions if d.status != "failed" and d.pattern]
        pairs.sort(key=lambda dv: (dv[1].layer, dv[1].head, dv[0].id))
        if not pairs:
            raise HeadmapsError(f"{self.model} has no descriptions to score; run `headmaps describe` first")
        return views, pairs[: self.limit] if self.limit is not None else pairs

    def _examples(self, operation: str) -> list[list[str]]:
        with self.store.read() as session:
            pairs = session.scalar(
                select(S.Operation.pairs)
                .where(S.Operation.name == operation)
                .order_by(S.Operation.id.desc())
                .limit(1)
            )
        return [list(p) for p in (pairs or [])[:3]]

    def agreement_plan(
        self, pairs: list[tuple[DescriptionOut, HeadView]]
    ) -> list[tuple[DescriptionOut, str, str, float]]:
        """(description, role, operation, its relation score) for positives and controls."""
        s = self.settings
        plan, rest = [], []
        for d, v in pairs:
            top = v.operations[0] if v.operations else None
            if top is not None and top.relation >= s.threshold:
                plan.append((d, "positive", top.name, top.relation))
            else:
                rest.append((d, v))
        wanted = round(s.controls * len(plan))
        operations = sorted({op for _, _, op, _ in plan})
        rng = _rng(s, "controls", self.model)
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

    async def run(self) -> ScoringSummary:
        started = time.monotonic()
        views, pairs = self._load()
        run_id = self.store.start_run(
            "evaluate",
            self.model,
            {"experiment": "description_scores", "llm_model": self.asker.label, **self.settings.model_dump()},
        )
        tasks = [self._simulate(d, v, distractor_pool(views, (v.layer, v.head))) for d, v in pairs]
        examples: dict[str, list[list[str]]] = {}
        for d, role, op, relation in self.agreement_plan(pairs):
            if op not in examples:
                examples[op] = self._examples(op)
            tasks.append(self._agree(d, role, op, relation, examples[op]))
        status, error = "interrupted", None
        try:
            running = [asyncio.ensure_future(t) for t in tasks]
            try:
                await asyncio.gather(*running)
            except BaseException:
                for t in running:
                    t.cancel()
                await asyncio.gather(*running, return_exceptions=True)
                raise
            status, error = "done", self.last_error
        except HeadmapsError as exc:
            status, error = "failed", str(exc)
            raise
        finally:
            usage = self.asker.usage
            self.store.finish_run(
                run_id,
                status,
                {"descriptions": len(pairs), "llm_calls": usage.llm_calls, "errors": self.errors},
                error,
            )
        summary = summarize(self.store, self.model, self.asker.label, self.settings.threshold)
        return summary.model_copy(
            update={
                "llm_calls": self.asker.usage.llm_calls,
                "tokens_in": self.asker.usage.tokens_in,
                "tokens_out": self.asker.usage.tokens_out,
                "errors": self.errors,
                "seconds": round(time.monotonic() - started, 3),
            }
        )

    async def _ask(self, prompt: str, schema: type[T], check: Any, shape: str) -> Answer | None:
        """The answer, or None after a request failed for good (not stored: a re-run retries)."""
        try:
            return await self.asker.ask_json(prompt, schema, check, shape)
        except Exception as exc:
            if fatal(exc):
                raise HeadmapsError(f"the LLM endpoint refused the run ({describe_error(exc)})") from exc
            if not isinstance(exc, openai.OpenAIError):
                raise
            self.errors += 1
            self.last_error = describe_error(exc)
            return None

    def _save(self, description_id: int, scorer: str, score: float | None, details: dict[str, Any]) -> None:
        self.store.add_description_score(
            DescriptionScoreIn(
                description_id=description_id,
                scorer=scorer,
                llm_model=self.asker.label,
                score=score,
                details=details,
            )
        )

    async def _simulate(self, d: DescriptionOut, view: HeadView, pool: list[str]) -> None:
        items, holdout = simulation_items(d, view, pool, self.settings)
        if not items:
            return  # no stored sources, or no distractors: nothing to ask
        rendered = prompts.render(
            "simulate",
            inputs=d.inputs or "",
            pattern=d.pattern or "",
            items=items,
            n_candidates=max(len(i["candidates"]) for i in items),
        )

        def check(answer: SimulationAnswer) -> str | None:
            if len(answer.answers) != len(items):
                return f"expected {len(items)} answers, got {len(answer.answers)}"
            for n, (a, item) in enumerate(zip(answer.answers, items, strict=True), 1):
                if not 1 <= a <= len(item["candidates"]):
                    return f"answer {n} is {a}, not a candidate number 1..{len(item['candidates'])}"
            return None

        shape = f'{{"answers": [{len(items)} candidate numbers]}}'
        answer = await self._ask(rendered.text, SimulationAnswer, check, shape)
        if answer is None:
            return
        details: dict[str, Any] = {
            "prompt_name": rendered.name,
            "prompt_sha": rendered.sha256,
            "holdout": holdout,
            "raw": answer.raw,
        }
        if answer.value is None:
            details.update(error=answer.error, items=items)
            self._save(d.id, SIMULATION, None, details)
            return
        for item, choice in zip(items, answer.value.answers, strict=True):
            item["predicted"] = item["candidates"][choice - 1]
            item["correct"] = item["predicted"] == item["truth"]
        accuracy = sum(i["correct"] for i in items) / len(items)
        chance = sum(1 / len(i["candidates"]) for i in items) / len(items)
        details.update(items=items, accuracy=accuracy, chance=chance)
        self._save(d.id, SIMULATION, (accuracy - chance) / (1 - chance), details)

    async def _agree(
        self, d: DescriptionOut, role: str, operation: str, relation: float, examples: list[list[str]]
    ) -> None:
        rendered = prompts.render(
            "operation_agreement",
            inputs=d.inputs or "",
            pattern=d.pattern or "",
            operation=operation,
            examples=examples,
        )
        shape = '{"names_operation": true or false, "justification": "one short sentence"}'
        answer = await self._ask(rendered.text, AgreementAnswer, None, shape)
        if answer is None:
            return
        details: dict[str, Any] = {
            "prompt_name": rendered.name,
            "prompt_sha": rendered.sha256,
            "role": role,
            "operation": operation,
            "relation": relation,
            "raw": answer.raw,
        }
        if answer.value is None:
            details["error"] = answer.error
            self._save(d.id, OPERATION_AGREEMENT, None, details)
            return
        named = answer.value.names_operation
        details.update(names_operation=named, justification=answer.value.justification)
        agrees = named if role == "positive" else not named
        self._save(d.id, OPERATION_AGREEMENT, 1.0 if agrees else 0.0, details)


# --- summaries -----------------------------------------------------------------------------------


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
