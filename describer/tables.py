"""Describing mapping tables that did not come from a model in the store (``headmaps describe
--mappings FILE``): the same prompts, LLM options and response cache as the main job, nothing
written to the store. The describer benchmark runs on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from describer.errors import HeadmapsError
from describer.evidence import table_evidence
from describer.llm import Describer, DescribeResult, describe_error, fatal
from describer.mapping_tables import MappingTable
from prompts import Template


class TableDescription(BaseModel):
    """One table's answer, as ``describe --mappings --json`` prints it."""

    name: str
    status: str
    """ok, unclear or failed (no answer in the schema), or error (no answer at all)."""
    inputs: str | None = None
    pattern: str | None = None
    unclear: bool | None = None
    category: str | None = None
    tags: list[str] = []


class TablesSummary(BaseModel):
    descriptions: list[TableDescription]
    llm_calls: int
    seconds: float


@dataclass
class TablesRun:
    """The answers so far, passed to the progress callback after each table."""

    total: int
    results: dict[str, tuple[TableDescription, DescribeResult | None]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return len(self.results)


def _row(name: str, result: DescribeResult) -> TableDescription:
    d = result.description
    if d is None:
        return TableDescription(name=name, status=result.status)
    return TableDescription(
        name=name,
        status=result.status,
        inputs=d.inputs,
        pattern=d.pattern,
        unclear=d.unclear,
        category=d.category,
        tags=d.tags,
    )


async def describe_tables(
    tables: Sequence[MappingTable],
    template: Template,
    describer: Describer,
    *,
    operations: Sequence[tuple[str, Sequence[tuple[str, str]]]] | None = None,
    progress: Callable[[TablesRun], None] | None = None,
) -> tuple[TablesSummary, TablesRun]:
    """Describe every table (at most ``describer.concurrency`` at once), in file order."""
    run = TablesRun(total=len(tables))
    calls_before = describer.usage.llm_calls
    rendered = [template.render(**table_evidence(t, operations)) for t in tables]  # errors first

    async def one(table: MappingTable, prompt: Any) -> None:
        try:
            result = await describer.describe(prompt.messages)
        except Exception as exc:
            if fatal(exc):
                raise HeadmapsError(f"the LLM endpoint refused the run ({describe_error(exc)})") from exc
            run.results[table.name] = (TableDescription(name=table.name, status="error"), None)
        else:
            run.results[table.name] = (_row(table.name, result), result)
        if progress:
            progress(run)

    await asyncio.gather(*(one(t, r) for t, r in zip(tables, rendered, strict=True)))
    summary = TablesSummary(
        descriptions=[run.results[t.name][0] for t in tables],
        llm_calls=describer.usage.llm_calls - calls_before,
        seconds=round(time.monotonic() - run.started, 3),
    )
    return summary, run
