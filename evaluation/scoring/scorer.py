"""``Scorer``: one scoring run over a model's descriptions. It loads the described heads, asks
the judging LLM the simulation and operation-agreement questions concurrently, stores each
score as its answer arrives (with what it was measured on: the simulation's holdout, whether
the description's prompt showed operations), records the run, and returns the summary of the
stored scores."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import openai
from sqlalchemy import select

import prompts
from describer.errors import HeadmapsError
from describer.llm import Endpoint, LLMBackend, ResponseCache, describe_error, fatal
from evaluation.scoring.asker import SCORING_PARAMS, Answer, Asker, T
from evaluation.scoring.described import Described, described_heads
from evaluation.scoring.operation_agreement import AgreementAnswer, agreement_plan, operations_in_prompt
from evaluation.scoring.settings import OPERATION_AGREEMENT, SIMULATION, ScoringSettings
from evaluation.scoring.simulation import SimulationAnswer, distractor_pool, simulation_items
from evaluation.scoring.summary import ScoringSummary, summarize
from store import Store
from store import tables as S
from store.records import DescriptionOut, DescriptionScoreIn, HeadView


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

    def _load(self) -> Described:
        views, pairs = described_heads(self.store, self.model)
        if not pairs:
            raise HeadmapsError(f"{self.model} has no descriptions to score; run `headmaps describe` first")
        return views, pairs

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
        return agreement_plan(pairs, self.settings, self.model)

    async def run(self) -> ScoringSummary:
        started = time.monotonic()
        described = self._load()
        views, pairs = described[0], described[1][: self.limit] if self.limit is not None else described[1]
        run_id = self.store.start_run(
            "evaluate",
            self.model,
            {"experiment": "description_scores", "llm_model": self.asker.label, **self.settings.model_dump()},
        )
        tasks = [self._simulate(d, v, distractor_pool(views, (v.layer, v.head))) for d, v in pairs]
        examples: dict[str, list[list[str]]] = {}
        plan = self.agreement_plan(pairs)
        asked = {op for _, _, op, _ in plan}
        for d, role, op, relation in plan:
            if op not in examples:
                examples[op] = self._examples(op)
            tasks.append(self._agree(d, role, op, relation, examples[op], asked))
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
        summary = summarize(
            self.store,
            self.model,
            self.asker.label,
            self.settings.threshold,
            self.settings.holdout,
            described,
        )
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
        plan = simulation_items(d, view, pool, self.settings)
        items = plan.items
        if plan.skipped is not None:
            return  # nothing of this holdout to ask about: the summary counts the reason
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
            "holdout": plan.holdout,
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
        self,
        d: DescriptionOut,
        role: str,
        operation: str,
        relation: float,
        examples: list[list[str]],
        asked: set[str],
    ) -> None:
        """Judge whether ``d`` names ``operation``; the score records whether ``d``'s prompt
        showed any of the operations this run ``asked`` about (then agreement is circular)."""
        rendered = prompts.render(
            "operation_agreement",
            inputs=d.inputs or "",
            pattern=d.pattern or "",
            operation=operation,
            examples=examples,
        )
        shape = '{"names_operation": true or false, "justification": "one short sentence"}'
        in_prompt = operations_in_prompt(d.rendered_prompt, asked, d.prompt_name)
        answer = await self._ask(rendered.text, AgreementAnswer, None, shape)
        if answer is None:
            return
        details: dict[str, Any] = {
            "prompt_name": rendered.name,
            "prompt_sha": rendered.sha256,
            "role": role,
            "operation": operation,
            "relation": relation,
            "description_prompt": d.prompt_name,
            "prompt_showed_operations": bool(in_prompt),
            "operations_in_prompt": in_prompt,
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


def score_descriptions(
    store: Store,
    model: str,
    connection: AbstractContextManager[tuple[Endpoint, LLMBackend]],
    settings: ScoringSettings,
    *,
    cache: ResponseCache | None = None,
    concurrency: int | None = None,
    limit: int | None = None,
) -> ScoringSummary:
    """Score the model's stored descriptions and store the scores. ``connection`` (from
    ``describer.llm.connect``) is entered only once there is something to score, so a local
    server is not started for nothing; the endpoint is checked before the first request."""
    if store.get_model(model).described == 0:
        raise HeadmapsError(f"{model} has no descriptions to score; run `headmaps describe` first")
    with connection as (endpoint, backend):
        asker = Asker(
            backend,
            params=SCORING_PARAMS,
            concurrency=concurrency or endpoint.default_concurrency,
            cache=cache,
            model_label=endpoint.label,
        )

        async def main() -> ScoringSummary:
            try:
                await backend.preflight()
                return await Scorer(store, model, asker, settings, limit=limit).run()
            finally:
                await backend.aclose()

        return asyncio.run(main())
