"""Export: the store (or one model) written in the format of ``store.export_format``, as JSON
text or a zip of CSVs."""

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

from describer.errors import HeadmapsError
from store import tables as S
from store.api import Store
from store.export_format import FORMAT, NULL, TABLES, VERSION
from store.pattern_io import dump_patterns


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
        for t in sorted(
            session.scalars(
                select(S.SuppressedToken).where(S.SuppressedToken.analysis_id.in_(list(analyses)))
            ),
            key=lambda t: (analyses[t.analysis_id], head_key(t.head_id), t.salient_rank, t.rank),
        ):
            layer, index = head_key(t.head_id)
            tables["suppressed_token"].append(
                {"analysis": analyses[t.analysis_id], "layer": layer, "head": index,
                 "salient_rank": t.salient_rank, "rank": t.rank, "token": t.token, "token_id": t.token_id,
                 "logit": t.logit}
            )  # fmt: skip
        for pair in sorted(
            session.scalars(select(S.OperationPair).where(S.OperationPair.analysis_id.in_(list(analyses)))),
            key=lambda p: (analyses[p.analysis_id], operations[p.operation_id], p.idx),
        ):
            tables["operation_pair"].append(
                {"analysis": analyses[pair.analysis_id], "operation": operations[pair.operation_id],
                 "idx": pair.idx, "source": pair.source, "source_id": pair.source_id, "target": pair.target,
                 "target_id": pair.target_id}
            )  # fmt: skip
        for o in sorted(
            session.scalars(select(S.PairOutcome).where(S.PairOutcome.analysis_id.in_(list(analyses)))),
            key=lambda o: (analyses[o.analysis_id], operations[o.operation_id], head_key(o.head_id)),
        ):
            layer, index = head_key(o.head_id)
            tables["pair_outcome"].append(
                {"analysis": analyses[o.analysis_id], "operation": operations[o.operation_id], "layer": layer,
                 "head": index, "k": o.k, "default_k": o.default_k,
                 "ranks": base64.b64encode(o.ranks).decode(),
                 "suppressed_ranks": base64.b64encode(o.suppressed_ranks).decode()}
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
        for rel in sorted(
            session.scalars(select(S.HeadRelation).where(S.HeadRelation.analysis_id.in_(list(analyses)))),
            key=lambda rel: (analyses[rel.analysis_id], head_key(rel.head_id), rel.rank),
        ):
            layer, index = head_key(rel.head_id)
            tables["head_relation"].append(
                {"analysis": analyses[rel.analysis_id], "layer": layer, "head": index, "relation": rel.relation,
                 "rank": rel.rank, "label": rel.label, "rows": rel.rows, "n_rows": rel.n_rows,
                 "fraction": rel.fraction, "examples": rel.examples}
            )  # fmt: skip
        tables["pattern_analysis"], tables["head_pattern"] = dump_patterns(session, names, heads)
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
