"""Export and import: the whole store (or one model) as one JSON file or a zip of CSVs.

Both formats hold the same tables (``TABLES``), with rows keyed by natural keys (model name,
layer, head) and file-local references (``ref``: 1, 2, … in file order) instead of database
ids, so importing into an empty database and exporting again gives an identical file.

- JSON: ``{"format": "headmaps-export", "version": 1, "tables": {TABLE: [ROW, …]}}``, keys
  sorted, two-space indent.
- CSV: a zip holding ``TABLE.csv`` per table (header row, then rows; lists and dicts as JSON
  text, bytes as base64, booleans as ``true``/``false``) and
  ``manifest.json`` with the format and version. Null is written ``\\N`` (PostgreSQL's COPY
  convention), so an empty cell is an empty string.
"""

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
from store.api import Store, operation_hash
from store.writes import bulk_insert

FORMAT, VERSION = "headmaps-export", 1
NULL = "\\N"

# table -> [(column, type)]; type one of int, float, str, bool, json, bytes, time (each may be null)
TABLES: dict[str, list[tuple[str, str]]] = {
    "model": [
        ("name", "str"), ("source", "str"), ("kind", "str"), ("content_hash", "str"), ("family", "str"),
        ("n_layers", "int"), ("n_heads", "int"), ("n_kv_heads", "int"), ("d_model", "int"),
        ("vocab_size", "int"), ("created_at", "time"),
    ],
    "operation": [
        ("ref", "int"), ("name", "str"), ("category", "str"), ("pairs", "json"), ("origin", "str"),
        ("source_file", "str"), ("content_hash", "str"),
    ],
    "analysis": [
        ("ref", "int"), ("model", "str"), ("settings_key", "str"), ("settings", "json"), ("created_at", "time"),
    ],
    "salient_token": [
        ("analysis", "int"), ("layer", "int"), ("head", "int"), ("rank", "int"), ("token", "str"),
        ("token_id", "int"), ("amplification", "float"),
    ],
    "mapped_token": [
        ("analysis", "int"), ("layer", "int"), ("head", "int"), ("salient_rank", "int"), ("rank", "int"),
        ("token", "str"), ("token_id", "int"), ("logit", "float"),
    ],
    "operation_score": [
        ("analysis", "int"), ("operation", "int"), ("k", "int"), ("layer", "int"), ("head", "int"),
        ("default_k", "bool"), ("n_pairs", "int"), ("relation", "float"), ("suppression", "float"),
    ],
    "run": [
        ("ref", "int"), ("kind", "str"), ("model", "str"), ("settings", "json"), ("started_at", "time"),
        ("finished_at", "time"), ("counts", "json"), ("status", "str"), ("error", "str"),
    ],
    "description": [
        ("ref", "int"), ("model", "str"), ("layer", "int"), ("head", "int"), ("analysis", "int"), ("run", "int"),
        ("prompt_name", "str"), ("prompt_sha", "str"), ("rendered_prompt", "str"), ("llm_model", "str"),
        ("llm_host", "str"), ("params", "json"), ("raw_response", "str"), ("reasoning", "str"),
        ("inputs", "str"), ("pattern", "str"), ("unclear", "bool"), ("category", "str"), ("tags", "json"),
        ("status", "str"), ("tokens_in", "int"), ("tokens_out", "int"), ("latency_s", "float"),
        ("created_at", "time"),
    ],
    "description_embedding": [
        ("description", "int"), ("encoder", "str"), ("dim", "int"), ("vector", "bytes"),
    ],
    "rating": [
        ("description", "int"), ("rater", "str"), ("label", "str"), ("comment", "str"),
        ("created_at", "time"), ("is_current", "bool"),
    ],
    "description_score": [
        ("description", "int"), ("scorer", "str"), ("llm_model", "str"), ("score", "float"),
        ("details", "json"), ("created_at", "time"),
    ],
}  # fmt: skip

OPTIONAL_TABLES = frozenset({"description_score"})
"""Tables added after version 1 of the format: files written before them lack them and import
as if they were empty (and an older headmaps ignores them)."""


# --- export -------------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def dump(store: Store, model: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every table as rows of plain values (the export's content), optionally for one model."""
    with store.read() as session:
        models = session.scalars(select(S.Model).order_by(S.Model.name)).all()
        if model is not None:
            models = [store._model(session, model)]
        tables: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
        heads: dict[int, tuple[str, int, int]] = {}
        analyses: dict[int, int] = {}
        operations: dict[int, int] = {}
        runs: dict[int, int] = {}
        descriptions: dict[int, int] = {}
        for m in models:
            tables["model"].append(
                {c: getattr(m, c) for c, _ in TABLES["model"]} | {"created_at": _time(m.created_at)}
            )
            for hid, layer, index in session.execute(
                select(S.Head.id, S.Head.layer, S.Head.index).where(S.Head.model_id == m.id)
            ):
                heads[hid] = (m.name, layer, index)
        model_ids = [m.id for m in models]
        names = {m.id: m.name for m in models}

        for a in session.scalars(
            select(S.Analysis).where(S.Analysis.model_id.in_(model_ids)).order_by(S.Analysis.id)
        ):
            analyses[a.id] = len(analyses) + 1
            tables["analysis"].append(
                {
                    "ref": analyses[a.id],
                    "model": names[a.model_id],
                    "settings_key": a.settings_key,
                    "settings": a.settings,
                    "created_at": _time(a.created_at),
                }
            )
        used_ops = select(S.OperationScore.operation_id).where(
            S.OperationScore.analysis_id.in_(list(analyses))
        )
        for op in session.scalars(
            select(S.Operation)
            .where(S.Operation.id.in_(used_ops) if model is not None else S.Operation.id.is_not(None))
            .order_by(S.Operation.name, S.Operation.content_hash)
        ):
            operations[op.id] = len(operations) + 1
            row = {c: getattr(op, c) for c, _ in TABLES["operation"] if c != "ref"}
            tables["operation"].append({"ref": operations[op.id], **row})

        def head_key(hid: int) -> tuple[int, int]:
            return heads[hid][1], heads[hid][2]

        for s in sorted(
            session.scalars(select(S.SalientToken).where(S.SalientToken.analysis_id.in_(list(analyses)))),
            key=lambda s: (analyses[s.analysis_id], head_key(s.head_id), s.rank),
        ):
            layer, index = head_key(s.head_id)
            tables["salient_token"].append(
                {"analysis": analyses[s.analysis_id], "layer": layer, "head": index, "rank": s.rank,
                 "token": s.token, "token_id": s.token_id, "amplification": s.amplification}
            )  # fmt: skip
        for t in sorted(
            session.scalars(select(S.MappedToken).where(S.MappedToken.analysis_id.in_(list(analyses)))),
            key=lambda t: (analyses[t.analysis_id], head_key(t.head_id), t.salient_rank, t.rank),
        ):
            layer, index = head_key(t.head_id)
            tables["mapped_token"].append(
                {"analysis": analyses[t.analysis_id], "layer": layer, "head": index,
                 "salient_rank": t.salient_rank, "rank": t.rank, "token": t.token, "token_id": t.token_id,
                 "logit": t.logit}
            )  # fmt: skip
        for sc in sorted(
            session.scalars(select(S.OperationScore).where(S.OperationScore.analysis_id.in_(list(analyses)))),
            key=lambda sc: (
                analyses[sc.analysis_id],
                operations[sc.operation_id],
                sc.k,
                head_key(sc.head_id),
            ),
        ):
            layer, index = head_key(sc.head_id)
            tables["operation_score"].append(
                {"analysis": analyses[sc.analysis_id], "operation": operations[sc.operation_id], "k": sc.k,
                 "layer": layer, "head": index, "default_k": sc.default_k, "n_pairs": sc.n_pairs,
                 "relation": sc.relation, "suppression": sc.suppression}
            )  # fmt: skip
        run_query = select(S.Run).order_by(S.Run.id)
        if model is not None:
            run_query = run_query.where(S.Run.model_id.in_(model_ids))
        for r in session.scalars(run_query):
            runs[r.id] = len(runs) + 1
            model_name = names.get(r.model_id) if r.model_id is not None else None
            tables["run"].append(
                {"ref": runs[r.id], "kind": r.kind, "model": model_name, "settings": r.settings,
                 "started_at": _time(r.started_at), "finished_at": _time(r.finished_at), "counts": r.counts,
                 "status": r.status, "error": r.error}
            )  # fmt: skip
        rows = session.scalars(select(S.Description).where(S.Description.head_id.in_(list(heads))))
        for d in sorted(rows, key=lambda d: (heads[d.head_id], d.created_at, d.id)):
            descriptions[d.id] = len(descriptions) + 1
            name, layer, index = heads[d.head_id]
            row = {
                c: getattr(d, c) for c, _ in TABLES["description"] if hasattr(S.Description, c) and c != "ref"
            }
            row.update(
                ref=descriptions[d.id],
                model=name,
                layer=layer,
                head=index,
                analysis=analyses.get(d.analysis_id),
                run=runs.get(d.run_id),
                created_at=_time(d.created_at),
            )
            tables["description"].append(row)
        for e in sorted(
            session.scalars(
                select(S.DescriptionEmbedding).where(
                    S.DescriptionEmbedding.description_id.in_(list(descriptions))
                )
            ),
            key=lambda e: (descriptions[e.description_id], e.encoder),
        ):
            tables["description_embedding"].append(
                {"description": descriptions[e.description_id], "encoder": e.encoder, "dim": e.dim,
                 "vector": base64.b64encode(e.vector).decode()}
            )  # fmt: skip
        for r in sorted(
            session.scalars(select(S.Rating).where(S.Rating.description_id.in_(list(descriptions)))),
            key=lambda r: (descriptions[r.description_id], r.created_at, r.id),
        ):
            tables["rating"].append(
                {"description": descriptions[r.description_id], "rater": r.rater, "label": r.label,
                 "comment": r.comment, "created_at": _time(r.created_at), "is_current": r.is_current}
            )  # fmt: skip
        for sc in sorted(
            session.scalars(
                select(S.DescriptionScore).where(S.DescriptionScore.description_id.in_(list(descriptions)))
            ),
            key=lambda sc: (descriptions[sc.description_id], sc.scorer, sc.llm_model),
        ):
            tables["description_score"].append(
                {"description": descriptions[sc.description_id], "scorer": sc.scorer,
                 "llm_model": sc.llm_model, "score": sc.score, "details": sc.details,
                 "created_at": _time(sc.created_at)}
            )  # fmt: skip
    return tables


def to_json(tables: dict[str, list[dict[str, Any]]]) -> str:
    return (
        json.dumps({"format": FORMAT, "version": VERSION, "tables": tables}, sort_keys=True, indent=2) + "\n"
    )


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return NULL
    if kind == "json":
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float":
        return repr(float(value))
    return str(value)


def to_zip(tables: dict[str, list[dict[str, Any]]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, data: str) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: identical bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)

        add(
            "manifest.json", json.dumps({"format": FORMAT, "version": VERSION, "tables": list(TABLES)}) + "\n"
        )
        for name, columns in TABLES.items():
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow([c for c, _ in columns])
            for row in tables[name]:
                writer.writerow([_cell(row[c], kind) for c, kind in columns])
            add(f"{name}.csv", text.getvalue())
    return buffer.getvalue()


def export_store(
    store: Store, model: str | None = None, fmt: str = "json", path: str | Path | None = None
) -> str | bytes:
    """The store (or one model) as JSON text or zipped CSV bytes; also written to ``path``."""
    if fmt not in ("json", "csv"):
        raise HeadmapsError(f"unknown export format {fmt!r}; use json or csv")
    tables = dump(store, model)
    data: str | bytes = to_json(tables) if fmt == "json" else to_zip(tables)
    if path is not None:
        Path(path).write_bytes(data.encode() if isinstance(data, str) else data)
    return data


# --- import -------------------------------------------------------------------------------------


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
            _import(session, store, tables, added)
    except (KeyError, TypeError, ValueError) as exc:
        raise HeadmapsError(f"{path}: malformed export ({type(exc).__name__}: {exc})") from exc
    return added


def _import(session: Session, store: Store, tables: dict, added: dict[str, int]) -> None:  # noqa: C901
    from store.records import ModelInfo

    conn = session.connection()
    heads: dict[str, dict[tuple[int, int], int]] = {}
    for row in tables["model"]:
        info = ModelInfo.model_validate(row)
        existed = session.scalar(select(S.Model.id).where(S.Model.name == info.name)) is not None
        model = store._ensure_model(session, info)
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
