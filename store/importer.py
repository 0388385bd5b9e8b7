"""Import: an export file (``store.export_format``, JSON or a zip of CSVs) merged into the store
in one transaction, adding only what is not stored already."""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from describer.errors import HeadmapsError
from store import tables as S
from store.api import Store
from store.base import operation_hash
from store.export_format import FORMAT, NULL, OPTIONAL_TABLES, TABLES, VERSION
from store.pair_io import import_pairs
from store.pattern_io import load_patterns
from store.records import ModelInfo
from store.writes import (
    TOKEN_COLUMNS,
    bulk_insert,
    ensure_model,
    insert_relations,
    relation_heads,
)


def _parse(value: str, kind: str) -> Any:
    if value == NULL:
        return None
    return {
        "int": int,
        "float": float,
        "str": str,
        "bool": lambda v: v == "true",
        "json": json.loads,
        "bytes": str,
        "time": str,
    }[kind](value)


def read_file(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The tables of an export file (JSON or a zip of CSVs)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise HeadmapsError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                manifest = json.loads(archive.read("manifest.json"))
                tables = {}
                present = set(archive.namelist())
                for name, columns in TABLES.items():
                    if name in OPTIONAL_TABLES and f"{name}.csv" not in present:
                        continue
                    reader = csv.reader(io.StringIO(archive.read(f"{name}.csv").decode()))
                    header = next(reader)
                    if header != [c for c, _ in columns]:
                        raise HeadmapsError(f"{path}: {name}.csv has unexpected columns {header}")
                    kinds = dict(columns)
                    tables[name] = [
                        {c: _parse(v, kinds[c]) for c, v in zip(header, r, strict=True)} for r in reader
                    ]
        else:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            tables = manifest.get("tables") if isinstance(manifest, dict) else None
    except (KeyError, ValueError, UnicodeDecodeError, zipfile.BadZipFile, csv.Error, StopIteration) as exc:
        raise HeadmapsError(f"{path}: not a headmaps export ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(tables, dict):
        raise HeadmapsError(f"{path}: not a headmaps export")
    if manifest.get("version") != VERSION:
        raise HeadmapsError(
            f"{path}: export version {manifest.get('version')} is not supported (need {VERSION})"
        )
    missing = set(TABLES) - set(tables) - OPTIONAL_TABLES
    if missing:
        raise HeadmapsError(f"{path}: export lacks tables {', '.join(sorted(missing))}")
    return {name: tables.get(name, []) for name in TABLES}


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def import_file(store: Store, path: str | Path) -> dict[str, int]:
    """Import an export file in one transaction; returns rows added per table.

    Merges into what is stored: a model already stored must be the same model; analyses,
    operations, scores, descriptions and ratings already stored are not duplicated."""
    tables = read_file(path)
    added = dict.fromkeys(TABLES, 0)
    try:
        with store.write() as session:
            store._lock(session)
            _import(session, tables, added)
    except (KeyError, TypeError, ValueError) as exc:
        raise HeadmapsError(f"{path}: malformed export ({type(exc).__name__}: {exc})") from exc
    return added


def _import(session: Session, tables: dict, added: dict[str, int]) -> None:  # noqa: C901
    conn = session.connection()
    heads: dict[str, dict[tuple[int, int], int]] = {}
    for row in tables["model"]:
        info = ModelInfo.model_validate(row)
        existed = session.scalar(select(S.Model.id).where(S.Model.name == info.name)) is not None
        model = ensure_model(session, info)
        if not existed:
            model.created_at = _dt(row["created_at"])
            added["model"] += 1
        heads[info.name] = {
            (layer, index): hid
            for hid, layer, index in session.execute(
                select(S.Head.id, S.Head.layer, S.Head.index).where(S.Head.model_id == model.id)
            )
        }

    def head_id(model: str, layer: int, head: int) -> int:
        if model not in heads:
            raise HeadmapsError(f"export refers to model {model!r} it does not hold")
        if (layer, head) not in heads[model]:
            raise HeadmapsError(f"export refers to head {layer}.{head}, outside {model}")
        return heads[model][(layer, head)]

    operations: dict[int, int] = {}
    for row in tables["operation"]:
        pairs = [tuple(p) for p in row["pairs"]]
        if operation_hash(pairs) != row["content_hash"]:
            raise HeadmapsError(f"operation {row['name']}: its pairs do not match its content hash")
        op_id = session.scalar(
            select(S.Operation.id).where(
                S.Operation.name == row["name"], S.Operation.content_hash == row["content_hash"]
            )
        )
        if op_id is None:
            op = S.Operation(**{k: v for k, v in row.items() if k != "ref"})
            session.add(op)
            session.flush()
            op_id = op.id
            added["operation"] += 1
        operations[row["ref"]] = op_id

    analyses: dict[int, tuple[int, str, set[int]]] = {}
    for row in tables["analysis"]:
        model_id = session.scalar(select(S.Model.id).where(S.Model.name == row["model"]))
        if model_id is None:
            raise HeadmapsError(f"export refers to model {row['model']!r} it does not hold")
        analysis = session.scalar(
            select(S.Analysis).where(
                S.Analysis.model_id == model_id, S.Analysis.settings_key == row["settings_key"]
            )
        )
        if analysis is None:
            analysis = S.Analysis(
                model_id=model_id,
                settings_key=row["settings_key"],
                settings=row["settings"],
                created_at=_dt(row["created_at"]),
            )
            session.add(analysis)
            session.flush()
            added["analysis"] += 1
        have = set(
            session.scalars(
                select(S.SalientToken.head_id).where(S.SalientToken.analysis_id == analysis.id).distinct()
            )
        )
        analyses[row["ref"]] = (analysis.id, row["model"], have)

    def target(row: dict) -> tuple[int, int, set[int]]:
        aid, model, have = analyses[row["analysis"]]
        return aid, head_id(model, row["layer"], row["head"]), have

    salient, mapped = [], []
    for row in tables["salient_token"]:
        aid, hid, have = target(row)
        if hid not in have:
            salient.append((aid, hid, row["rank"], row["token"], row["token_id"], row["amplification"]))
    for row in tables["mapped_token"]:
        aid, hid, have = target(row)
        if hid not in have:
            mapped.append(
                (aid, hid, row["salient_rank"], row["rank"], row["token"], row["token_id"], row["logit"])
            )
    bulk_insert(
        conn,
        S.SalientToken.__table__,
        ("analysis_id", "head_id", "rank", "token", "token_id", "amplification"),
        salient,
    )
    bulk_insert(
        conn, S.MappedToken.__table__,
        ("analysis_id", "head_id", "salient_rank", "rank", "token", "token_id", "logit"), mapped,
    )  # fmt: skip
    added["salient_token"], added["mapped_token"] = len(salient), len(mapped)
    suppressed = [
        (aid, hid, row["salient_rank"], row["rank"], row["token"], row["token_id"], row["logit"])
        for row in tables["suppressed_token"]
        for aid, hid, have in [target(row)]
        if hid not in have
    ]
    bulk_insert(conn, S.SuppressedToken.__table__, TOKEN_COLUMNS, suppressed)
    added["suppressed_token"] = len(suppressed)

    existing_scores = {
        (a, o, k)
        for a, o, k in session.execute(
            select(S.OperationScore.analysis_id, S.OperationScore.operation_id, S.OperationScore.k).distinct()
        )
    }
    scores = []
    for row in tables["operation_score"]:
        aid, hid, _ = target(row)
        oid = operations[row["operation"]]
        if (aid, oid, row["k"]) not in existing_scores:
            scores.append(
                (
                    aid,
                    oid,
                    row["k"],
                    hid,
                    row["default_k"],
                    row["n_pairs"],
                    row["relation"],
                    row["suppression"],
                )
            )
    bulk_insert(
        conn, S.OperationScore.__table__,
        ("analysis_id", "operation_id", "k", "head_id", "default_k", "n_pairs", "relation", "suppression"), scores,
    )  # fmt: skip
    added["operation_score"] = len(scores)
    import_pairs(session, tables, added, analyses, operations, target, existing_scores)

    related: dict[int, set[int]] = {}
    relations = []
    for row in tables["head_relation"]:
        aid, hid, _ = target(row)
        if aid not in related:
            related[aid] = relation_heads(session, aid)
        if hid not in related[aid]:
            relations.append(
                {"analysis_id": aid, "head_id": hid, **{k: row[k] for k in ("relation", "rank", "label", "rows",
                 "n_rows", "fraction", "examples")}}
            )  # fmt: skip
    insert_relations(session, relations)
    added["head_relation"] = len(relations)
    load_patterns(session, tables, added, head_id)

    runs: dict[int, int] = {}
    for row in tables["run"]:
        model_id = (
            session.scalar(select(S.Model.id).where(S.Model.name == row["model"])) if row["model"] else None
        )
        started = _dt(row["started_at"])
        run_id = session.scalar(
            select(S.Run.id).where(
                S.Run.kind == row["kind"], S.Run.started_at == started, S.Run.model_id == model_id
            )
        )
        if run_id is None:
            run = S.Run(
                kind=row["kind"], model_id=model_id, settings=row["settings"], started_at=started,
                finished_at=_dt(row["finished_at"]), counts=row["counts"], status=row["status"], error=row["error"],
            )  # fmt: skip
            session.add(run)
            session.flush()
            run_id = run.id
            added["run"] += 1
        runs[row["ref"]] = run_id

    descriptions: dict[int, int] = {}
    for row in tables["description"]:
        hid = head_id(row["model"], row["layer"], row["head"])
        created = _dt(row["created_at"])
        existing = session.scalar(
            select(S.Description.id).where(
                S.Description.head_id == hid,
                S.Description.created_at == created,
                S.Description.prompt_sha == row["prompt_sha"],
                S.Description.llm_model == row["llm_model"],
            )
        )
        if existing is None:
            fields = {
                k: v for k, v in row.items() if k not in ("ref", "model", "layer", "head", "analysis", "run")
            }
            d = S.Description(
                **fields,
                head_id=hid,
                analysis_id=analyses[row["analysis"]][0] if row["analysis"] is not None else None,
                run_id=runs[row["run"]] if row["run"] is not None else None,
            )
            d.created_at = created
            session.add(d)
            session.flush()
            existing = d.id
            added["description"] += 1
        descriptions[row["ref"]] = existing

    for row in tables["description_embedding"]:
        did = descriptions[row["description"]]
        if (
            session.scalar(
                select(S.DescriptionEmbedding.id).where(
                    S.DescriptionEmbedding.description_id == did,
                    S.DescriptionEmbedding.encoder == row["encoder"],
                )
            )
            is None
        ):
            vector = base64.b64decode(row["vector"])
            session.add(
                S.DescriptionEmbedding(
                    description_id=did, encoder=row["encoder"], dim=row["dim"], vector=vector
                )
            )
            added["description_embedding"] += 1
    session.flush()

    for row in tables["rating"]:
        did = descriptions[row["description"]]
        created = _dt(row["created_at"])
        if (
            session.scalar(
                select(S.Rating.id).where(
                    S.Rating.description_id == did,
                    S.Rating.rater == row["rater"],
                    S.Rating.created_at == created,
                )
            )
            is None
        ):
            if row["is_current"]:
                current = session.scalars(
                    select(S.Rating).where(
                        S.Rating.description_id == did, S.Rating.rater == row["rater"], S.Rating.is_current
                    )
                ).all()
                for old in current:
                    old.is_current = False
                session.flush()
            session.add(
                S.Rating(description_id=did, rater=row["rater"], label=row["label"], comment=row["comment"],
                         created_at=created, is_current=row["is_current"])
            )  # fmt: skip
            session.flush()
            added["rating"] += 1

    for row in tables["description_score"]:
        did = descriptions[row["description"]]
        # A score already stored for this description, scorer and LLM is kept (like ratings, an
        # import never overwrites what the database holds).
        if (
            session.scalar(
                select(S.DescriptionScore.id).where(
                    S.DescriptionScore.description_id == did,
                    S.DescriptionScore.scorer == row["scorer"],
                    S.DescriptionScore.llm_model == row["llm_model"],
                )
            )
            is None
        ):
            session.add(
                S.DescriptionScore(description_id=did, scorer=row["scorer"], llm_model=row["llm_model"],
                                   score=row["score"], details=row["details"], created_at=_dt(row["created_at"]))
            )  # fmt: skip
            session.flush()
            added["description_score"] += 1
