"""Writing a whole analysis fast: validated first, then one transaction of bulk inserts; and
the get-or-create of a model with its heads, which every analysis write and import starts with.

Rows go in through the driver's ``executemany`` with positional tuples; on SQLite that writes
the 550,000 rows of a 5,000-head analysis in a few seconds (``benchmarks/bench_store.py``),
where building ORM objects takes many times longer.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from describer.errors import HeadmapsError, NotFound
from store import tables as S
from store.base import StoreBase, operation_hash, utcnow
from store.records import AnalysisIn, ModelInfo, OperationIn, OperationScoresIn, RelationIn

SKIPPED = "skipped_operations"
"""The key of the analysis settings under which operations without usable pairs are recorded."""


def bulk_insert(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple]) -> None:
    """``executemany`` of positional rows straight to the driver."""
    if not rows:
        return
    quote = conn.dialect.identifier_preparer.quote
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    conn.exec_driver_sql(sql, rows)


def relation_rows(analysis_id: int, head_id: int, relations: Sequence[RelationIn]) -> list[dict]:
    """``head_relation`` rows of one head's relations, ranked in the given order (a key given
    twice keeps its first, strongest fact)."""
    rows: list[dict] = []
    seen: set[str] = set()
    for r in relations:
        if r.relation not in seen:
            seen.add(r.relation)
            rows.append(
                {"analysis_id": analysis_id, "head_id": head_id, "relation": r.relation, "rank": len(rows),
                 "label": r.label, "rows": r.rows, "n_rows": r.n_rows, "fraction": r.rows / r.n_rows,
                 "examples": [list(e) for e in r.examples]}
            )  # fmt: skip
    return rows


def insert_relations(session: Session, rows: list[dict]) -> None:
    """One executemany of ``relation_rows`` (through Core, which writes the JSON column on
    either dialect; a head has a handful of relations, so this is not the bulk of a write)."""
    if rows:
        session.execute(insert(S.HeadRelation), rows)


def relation_heads(session: Session, analysis_id: int) -> set[int]:
    """Heads with relations stored for the analysis."""
    return set(
        session.scalars(
            select(S.HeadRelation.head_id).where(S.HeadRelation.analysis_id == analysis_id).distinct()
        )
    )


TOKEN_COLUMNS = ("analysis_id", "head_id", "salient_rank", "rank", "token", "token_id", "logit")
"""The columns of ``mapped_token`` and ``suppressed_token``."""
PAIR_COLUMNS = ("analysis_id", "operation_id", "idx", "source", "source_id", "target", "target_id")
OUTCOME_COLUMNS = ("analysis_id", "operation_id", "head_id", "k", "default_k", "ranks", "suppressed_ranks")


def save_pair_outcomes(
    session: Session,
    analysis_id: int,
    operation_id: int,
    head_ids: dict[tuple[int, int], int],
    scores: OperationScoresIn,
    default_k: bool,
    scored: bool,
) -> None:
    """Store an operation's pairs and each head's ranks, unless the analysis holds them already
    (ranks at the default k replace ones at an overridden k). ``scored``: the operation's scores
    at this k are stored already (an analysis from before pair outcomes were kept); they are
    rewritten from the same counts, so that they stay exactly the mean of the stored hits."""
    stored = session.scalar(
        select(S.PairOutcome.default_k)
        .where(S.PairOutcome.analysis_id == analysis_id, S.PairOutcome.operation_id == operation_id)
        .limit(1)
    )
    if stored is not None and (stored or not default_k):
        return
    for table in (S.PairOutcome, S.OperationPair):
        session.execute(
            delete(table).where(table.analysis_id == analysis_id, table.operation_id == operation_id)
        )
    conn = session.connection()
    bulk_insert(
        conn,
        S.OperationPair.__table__,
        PAIR_COLUMNS,
        [(analysis_id, operation_id, i, *pair) for i, pair in enumerate(scores.pairs)],
    )
    ranks, suppressed = scores.ranks, scores.suppressed_ranks
    assert ranks is not None and suppressed is not None  # validated together
    bulk_insert(
        conn,
        S.PairOutcome.__table__,
        OUTCOME_COLUMNS,
        [
            (analysis_id, operation_id, hid, scores.k, default_k,
             ranks[layer, index].tobytes(), suppressed[layer, index].tobytes())
            for (layer, index), hid in head_ids.items()
        ],
    )  # fmt: skip
    if scored:
        t = S.OperationScore.__table__
        conn.execute(
            update(t)
            .where(
                t.c.analysis_id == analysis_id,
                t.c.operation_id == operation_id,
                t.c.k == scores.k,
                t.c.head_id == bindparam("hid"),
            )
            .values(relation=bindparam("rel"), suppression=bindparam("sup")),
            [
                {"hid": hid, "rel": scores.scores[layer][index], "sup": scores.suppression[layer][index]}
                for (layer, index), hid in head_ids.items()
            ],
        )


def ensure_model(session: Session, info: ModelInfo) -> S.Model:
    """The stored model named ``info.name``, created with its heads when missing; refuses a
    different model stored under that name. Callers hold ``StoreBase._lock``."""
    model = session.scalar(select(S.Model).where(S.Model.name == info.name))
    if model is not None:
        shape = ("n_layers", "n_heads", "n_kv_heads", "d_model", "vocab_size")
        if any(getattr(model, f) != getattr(info, f) for f in shape) or (
            model.content_hash and info.content_hash and model.content_hash != info.content_hash
        ):
            raise HeadmapsError(
                f"a different model named {info.name!r} is already stored (other weights or shape); "
                "give this one another name or use another database"
            )
        return model
    model = S.Model(**info.model_dump(), created_at=utcnow())
    session.add(model)
    session.flush()
    session.execute(
        insert(S.Head),
        [
            {"model_id": model.id, "layer": layer, "index": head}
            for layer in range(info.n_layers)
            for head in range(info.n_heads)
        ],
    )
    return model


def validate(info: ModelInfo, data: AnalysisIn) -> None:
    """Everything that can be wrong with an analysis, checked before anything is written."""
    if data.model != info.name:
        raise HeadmapsError(f"the analysis is of {data.model!r}, not of {info.name!r}")
    seen: set[tuple[int, int]] = set()
    for h in data.heads:
        if not 0 <= h.layer < info.n_layers:
            raise NotFound(f"layer {h.layer} out of range: {info.name} has layers 0..{info.n_layers - 1}")
        if not 0 <= h.head < info.n_heads:
            raise NotFound(f"head {h.head} out of range: {info.name} has heads 0..{info.n_heads - 1}")
        if (h.layer, h.head) in seen:
            raise HeadmapsError(f"head {h.layer}.{h.head} appears twice in the analysis")
        seen.add((h.layer, h.head))
    for name, scores in data.operations.items():
        if scores.name != name:
            raise HeadmapsError(f"operation scores filed under {name!r} are named {scores.name!r}")
        for grid in (scores.scores, scores.suppression):
            if len(grid) != info.n_layers or any(len(row) != info.n_heads for row in grid):
                raise HeadmapsError(
                    f"scores of {name} are not {info.n_layers}×{info.n_heads} (layers × heads of {info.name})"
                )
        if (scores.ranks is None) != (scores.suppressed_ranks is None):
            raise HeadmapsError(f"pair outcomes of {name}: ranks and suppressed ranks come together")
        if scores.ranks is not None:
            shape = (info.n_layers, info.n_heads, scores.n_pairs)
            if len(scores.pairs) != scores.n_pairs:
                raise HeadmapsError(
                    f"pair outcomes of {name}: {len(scores.pairs)} pairs, not {scores.n_pairs}"
                )
            for ranks in (scores.ranks, scores.suppressed_ranks):
                if ranks.shape != shape:
                    raise HeadmapsError(f"pair outcomes of {name} are {ranks.shape}, not {shape}")


def save_analysis(
    store: StoreBase,
    info: ModelInfo,
    data: AnalysisIn,
    settings_key: str,
    operations: Sequence[OperationIn],
    default_k: bool,
) -> int:
    """``Store.save_analysis``: validate, then write everything missing in one transaction."""
    validate(info, data)
    definitions = {op.name: op for op in operations}
    with store.write() as session:
        store._lock(session)
        model = ensure_model(session, info)
        head_ids = {
            (layer, index): hid
            for hid, layer, index in session.execute(
                select(S.Head.id, S.Head.layer, S.Head.index).where(S.Head.model_id == model.id)
            )
        }
        analysis = session.scalar(
            select(S.Analysis).where(S.Analysis.model_id == model.id, S.Analysis.settings_key == settings_key)
        )
        if analysis is None:
            analysis = S.Analysis(
                model_id=model.id, settings_key=settings_key, settings=data.settings, created_at=utcnow()
            )
            session.add(analysis)
            session.flush()
        if data.skipped_operations:
            skipped = {**analysis.settings.get(SKIPPED, {}), **data.skipped_operations}
            analysis.settings = {**analysis.settings, SKIPPED: skipped}  # a new dict: the JSON is rewritten
            session.flush()
        conn = session.connection()

        stored = set(
            session.scalars(
                select(S.SalientToken.head_id).where(S.SalientToken.analysis_id == analysis.id).distinct()
            )
        )
        salient_rows, mapping_rows, suppressed_rows = [], [], []
        for h in data.heads:
            hid = head_ids[(h.layer, h.head)]
            if hid in stored:
                continue
            for rank, s in enumerate(h.salient):
                salient_rows.append((analysis.id, hid, rank, s.token, s.token_id, s.amplification))
                for mrank, m in enumerate(s.mappings):
                    mapping_rows.append((analysis.id, hid, rank, mrank, m.token, m.token_id, m.logit))
                for mrank, m in enumerate(s.suppressed):
                    suppressed_rows.append((analysis.id, hid, rank, mrank, m.token, m.token_id, m.logit))
        bulk_insert(
            conn,
            S.SalientToken.__table__,
            ("analysis_id", "head_id", "rank", "token", "token_id", "amplification"),
            salient_rows,
        )
        bulk_insert(
            conn,
            S.MappedToken.__table__,
            ("analysis_id", "head_id", "salient_rank", "rank", "token", "token_id", "logit"),
            mapping_rows,
        )
        bulk_insert(conn, S.SuppressedToken.__table__, TOKEN_COLUMNS, suppressed_rows)
        if any(h.relations for h in data.heads):
            related = relation_heads(session, analysis.id)
            insert_relations(
                session,
                [
                    row
                    for h in data.heads
                    if head_ids[(h.layer, h.head)] not in related
                    for row in relation_rows(analysis.id, head_ids[(h.layer, h.head)], h.relations)
                ],
            )

        for name, scores in data.operations.items():
            definition = definitions.get(name)
            if definition is None:
                # No definition given: the operation stored under this name, else a bare one.
                op_id = session.scalar(
                    select(S.Operation.id)
                    .where(S.Operation.name == name)
                    .order_by(S.Operation.id.desc())
                    .limit(1)
                )
                definition = OperationIn(name=name, category=scores.category, pairs=[])
            else:
                op_id = session.scalar(
                    select(S.Operation.id).where(
                        S.Operation.name == name, S.Operation.content_hash == operation_hash(definition.pairs)
                    )
                )
            if op_id is None:
                row = S.Operation(
                    name=name,
                    category=definition.category,
                    pairs=[list(p) for p in definition.pairs],
                    origin=definition.origin,
                    source_file=definition.source_file,
                    content_hash=operation_hash(definition.pairs),
                )
                session.add(row)
                session.flush()
                op_id = row.id
            already = session.scalar(
                select(func.count()).where(
                    S.OperationScore.analysis_id == analysis.id,
                    S.OperationScore.operation_id == op_id,
                    S.OperationScore.k == scores.k,
                )
            )
            if scores.ranks is not None:
                save_pair_outcomes(session, analysis.id, op_id, head_ids, scores, default_k, bool(already))
            if already:
                continue
            bulk_insert(
                conn,
                S.OperationScore.__table__,
                (
                    "analysis_id",
                    "operation_id",
                    "k",
                    "head_id",
                    "default_k",
                    "n_pairs",
                    "relation",
                    "suppression",
                ),
                [
                    (analysis.id, op_id, scores.k, hid, default_k, scores.n_pairs, rel, sup)
                    for (layer, index), hid in head_ids.items()
                    for rel, sup in [(scores.scores[layer][index], scores.suppression[layer][index])]
                ],
            )
        return analysis.id
