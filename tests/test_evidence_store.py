"""The evidence each head keeps besides its top mappings: the tokens each salient source is
mapped to most negatively (``SalientOut.suppressed``), and every operation pair's outcome
(``Store.head_pairs``). Both are checked against logit rows computed independently from the
model's own modules (``describer.maps.reference.PaperReference``: the tiny Llama's default
source is the paper's recipe), after ``headmaps analyze``'s job stored them."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import inspect, text

from describer.errors import NotFound
from describer.maps.adapters import adapter_for
from describer.maps.analyzer import Analyzer
from describer.maps.operations import Operation, builtin_operations
from describer.maps.reference import PaperReference
from describer.maps.settings import AnalysisSettings
from store import open_store
from store import tables as S
from store.export import export_store
from store.importer import import_file
from store.records import OperationScoresIn
from tests._cli import tiny_dir, tokenizer  # noqa: F401  (fixtures)
from tests._slow_maps import ReferenceModel, readable_tokens
from tests._storedb import analysis, definitions, model_info
from tests.test_analysis import CHUNK, make_ops, tiny_model

MODEL = "tiny-llama"
TOP_MAPPINGS = 3


@pytest.fixture(scope="module")
def operations() -> list[Operation]:
    """Copying (k=1) and a shuffled relation over the same words (default k=10)."""
    copying = builtin_operations()["general_copying"]
    targets = [t for _, t in copying.pairs]
    random.Random(0).shuffle(targets)
    shuffled = tuple(zip([s for s, _ in copying.pairs], targets, strict=True))
    return [
        copying,
        Operation(name="shuffled", category="custom", pairs=shuffled, origin="/tmp/shuffled.json"),
    ]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path, operations: list[Operation]):  # noqa: ANN201, F811
    """A store holding the tiny Llama's analysis, made by the analyze job."""
    from describer.analyze import analyze_and_store

    url = f"sqlite:///{tmp_path_factory.mktemp('evidence') / 'store.db'}"
    with open_store(url) as store:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analyze_and_store(
                store, str(tiny_dir), operations, top_tokens=4, top_mappings=TOP_MAPPINGS, device="cpu",
                patterns=None, warn=lambda _: None,
            )  # fmt: skip
        yield store


@pytest.fixture(scope="module")
def reference(tiny_dir: Path, tokenizer: object) -> tuple[PaperReference, torch.Tensor]:  # noqa: F811
    """The paper's recipe read from the model's own modules, and the readable-token mask."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir).float().eval()
    ref = PaperReference(model)
    return ref, readable_tokens(tokenizer, ref.U.shape[1])


def logit_row(ref: PaperReference, layer: int, head: int, source: int) -> torch.Tensor:
    with torch.no_grad():
        return ref.sources(layer)[source] @ ref.W_VO(layer, head) @ ref.U


def test_suppressed_are_the_bottom_of_the_mapping_row(stored, reference) -> None:  # noqa: ANN001
    ref, readable = reference
    checked = 0
    for layer in range(2):
        for head in range(4):
            view = stored.get_head(MODEL, layer, head)
            assert len(view.salient) == 4
            for s in view.salient:
                row = logit_row(ref, layer, head, s.token_id)
                top = row.masked_fill(~readable, float("-inf")).topk(TOP_MAPPINGS)
                low = (-row).masked_fill(~readable, float("-inf")).topk(TOP_MAPPINGS)
                assert [m.token_id for m in s.mappings] == top.indices.tolist()  # the same row
                assert [m.token_id for m in s.suppressed] == low.indices.tolist()
                got = [m.logit for m in s.suppressed]
                assert got == sorted(got)  # most negative first
                assert got == pytest.approx((-low.values).tolist(), rel=1e-4, abs=1e-4)
                assert all(readable[m.token_id] for m in s.suppressed)
                checked += 1
    assert checked == 32


def test_pair_outcomes_reproduce_the_scores(stored, reference, tokenizer) -> None:  # noqa: ANN001, F811
    ref, _ = reference
    assert stored.pair_operations(MODEL) == ["general_copying", "shuffled"]
    rng = random.Random(1)
    outcomes = set()
    for name in ("general_copying", "shuffled"):
        for layer in range(2):
            for head in range(4):
                pairs = stored.head_pairs(MODEL, layer, head, name)
                score = next(o for o in stored.get_head(MODEL, layer, head).operations if o.name == name)
                assert score.has_pairs and score.k == pairs.k == (1 if name == "general_copying" else 10)
                assert len(pairs.pairs) == pairs.n_pairs == score.n_pairs > 30
                hits = [p.hit for p in pairs.pairs]
                assert sum(hits) / len(hits) == pairs.relation == score.relation
                low = [p.suppressed_hit for p in pairs.pairs]
                assert sum(low) / len(low) == pairs.suppression == score.suppression
                assert all(p.hit == (p.rank < pairs.k) for p in pairs.pairs)
                outcomes |= {(name, p.hit) for p in pairs.pairs} | {
                    ("-" + name, p.suppressed_hit) for p in pairs.pairs
                }
                for p in rng.sample(pairs.pairs, 4):
                    assert p.source == tokenizer.decode([p.source_id]) and p.target.strip()
                    row = logit_row(ref, layer, head, p.source_id)
                    _check_rank(row, p.target_id, p.rank, pairs.k)
                    _check_rank(-row, p.target_id, p.suppressed_rank, pairs.k)
    # Hits and misses of both operations, and suppressed hits: the means above have teeth.
    assert {(n, b) for n in ("general_copying", "shuffled") for b in (True, False)} | {
        ("-shuffled", True)
    } <= outcomes
    copying = stored.head_pairs(MODEL, 0, 0, "general_copying")
    assert [(p.source, p.target) for p in copying.pairs][:2] == [
        (" " + s, " " + t) for s, t in builtin_operations()["general_copying"].pairs[:2]
    ]


def _check_rank(row: torch.Tensor, target: int, rank: int, k: int) -> None:
    """``rank`` counts the tokens strictly above the target (up to rounding): exactly below k,
    a lower bound at or above it."""
    eps = 1e-4 * float(row.abs().max())
    surely_above = int((row > row[target] + eps).sum())
    maybe_above = int((row > row[target] - eps).sum()) - 1  # not the target itself
    if maybe_above < k:
        assert surely_above <= rank <= maybe_above
    else:
        assert rank <= maybe_above
        assert rank >= k or surely_above < k


def test_early_stopped_ranks_are_exact_below_k(word_tokenizer) -> None:  # noqa: ANN001
    """With the vocabulary streamed in 3 chunks pairs stop being counted early; the ranks are
    still exact below k, a lower bound at or above it, and give the scores exactly."""
    adapter = adapter_for(tiny_model("llama", len(word_tokenizer)))
    ops = make_ops(word_tokenizer, adapter.vocab_size)
    settings = AnalysisSettings(source="embed+mlp0")
    _, scores = Analyzer(adapter, word_tokenizer, settings, chunk_elements=CHUNK).analyze(
        ops, with_salient=False
    )
    m = ReferenceModel(adapter, settings)
    cut_short = False
    for op, s in zip(ops, scores, strict=True):
        assert s.ranks.dtype == torch.int32 and s.ranks.shape == (3, 4, op.n_pairs)
        assert [(sid, tid) for _, sid, _, tid in s.pairs] == list(
            zip(op.source_ids, op.target_ids, strict=True)
        )
        for ranks, grid in ((s.ranks, s.scores), (s.suppressed_ranks, s.suppression)):
            means = (ranks < op.k).sum(-1).double() / op.n_pairs
            assert means.tolist() == grid
        layer, head = 2, 1
        with torch.no_grad():
            rows = m.inputs(layer)[list(op.source_ids)] @ m.W_VO(layer, head) @ m.U
        target = rows.gather(1, torch.tensor(op.target_ids)[:, None])
        for got, exact in ((s.ranks, (rows > target).sum(1)), (s.suppressed_ranks, (rows < target).sum(1))):
            got = got[layer, head].long()
            below = exact < op.k
            assert torch.equal(got[below], exact[below])
            assert bool((got[~below] >= op.k).all() and (got[~below] <= exact[~below]).all())
            cut_short |= bool((got[~below] < exact[~below]).any())
    assert cut_short  # counting did stop early for some pair: the lower bounds were tested


def test_head_pairs_not_found(stored, tmp_path: Path) -> None:  # noqa: ANN001
    cases = {
        ("nope", 0, 0, "shuffled"): "unknown model 'nope'",
        (MODEL, 5, 0, "shuffled"): "layer 5 out of range",
        (MODEL, 0, 9, "shuffled"): "head 9 out of range",
        (MODEL, 0, 0, "country_to_capital"): "no operation 'country_to_capital' is scored for tiny-llama",
    }
    for args, message in cases.items():
        with pytest.raises(NotFound, match=message) as caught:
            stored.head_pairs(*args)
        assert "\n" not in str(caught.value)
    assert "general_copying, shuffled" in _message(stored, MODEL, 0, 0, "country_to_capital")
    with pytest.raises(NotFound, match="unknown model"):
        stored.pair_operations("nope")

    # An analysis stored before pair outcomes were kept: scores but no pairs.
    info, data = model_info(), analysis(model_info())
    with open_store(f"sqlite:///{tmp_path / 'old.db'}") as old:
        old.save_analysis(info, data, settings_key="k", operations=definitions())
        message = _message(old, "tiny", 1, 2, "copy")
        assert (
            "no pair outcomes of copy for tiny are stored" in message and "re-run headmaps analyze" in message
        )
        assert old.pair_operations("tiny") == []
        assert not any(o.has_pairs for o in old.get_head("tiny", 1, 2).operations)
        assert all(s.suppressed == [] for s in old.get_head("tiny", 1, 2).salient)
        # Computed again: the pairs are added, and the scores rewritten from the same counts.
        ranks = np.arange(3 * 4 * 10, dtype=np.int64).reshape(3, 4, 10) % 3
        again = data.model_copy(deep=True)
        copy = again.operations["copy"]
        again.operations["copy"] = OperationScoresIn(
            **{**copy.model_dump(exclude={"ranks", "suppressed_ranks"}),
               "scores": ((ranks < 1).mean(-1)).tolist(), "suppression": ((ranks < 1).mean(-1)).tolist(),
               "pairs": [(f" s{i}", i, f" t{i}", 100 + i) for i in range(10)]},
            ranks=ranks, suppressed_ranks=ranks,
        )  # fmt: skip
        old.save_analysis(info, again, settings_key="k", operations=definitions())
        pairs = old.head_pairs("tiny", 1, 2, "copy")
        assert [p.rank for p in pairs.pairs] == (ranks[1, 2]).tolist()
        assert pairs.relation == sum(p.hit for p in pairs.pairs) / 10 == (ranks[1, 2] < 1).mean()
        assert old.pair_operations("tiny") == ["copy"]
        with old.write() as session:  # deleting the analysis deletes its pairs and outcomes
            session.execute(S.Analysis.__table__.delete())
        with old.read() as session:
            assert session.query(S.PairOutcome).count() == session.query(S.OperationPair).count() == 0


def _message(store, *args: object) -> str:  # noqa: ANN001
    with pytest.raises(NotFound) as caught:
        store.head_pairs(*args)
    return str(caught.value)


def test_export_import_keeps_the_evidence(stored, tmp_path: Path) -> None:  # noqa: ANN001
    first = export_store(stored, fmt="json")
    tables = json.loads(first)["tables"]
    assert len(tables["pair_outcome"]) == 2 * 8 and len(tables["suppressed_token"]) == 8 * 4 * TOP_MAPPINGS
    for fmt in ("json", "csv"):
        path = tmp_path / f"e.{fmt}"
        export_store(stored, fmt=fmt, path=path)
        with open_store(f"sqlite:///{tmp_path / f'{fmt}.db'}") as copy:
            added = import_file(copy, path)
            assert added["operation_pair"] == len(tables["operation_pair"]) and added["pair_outcome"] == 16
            assert export_store(copy, fmt="json") == first
            assert copy.head_pairs(MODEL, 1, 3, "shuffled") == stored.head_pairs(MODEL, 1, 3, "shuffled")
            assert copy.get_head(MODEL, 1, 3).salient == stored.get_head(MODEL, 1, 3).salient
    # A file from before these tables imports as before.
    doc = json.loads(first)
    for name in ("suppressed_token", "operation_pair", "pair_outcome"):
        del doc["tables"][name]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    with open_store(f"sqlite:///{tmp_path / 'old.db'}") as copy:
        added = import_file(copy, tmp_path / "old.json")
        assert added["mapped_token"] > 0 and added["pair_outcome"] == added["suppressed_token"] == 0


def test_a_0006_store_gains_the_evidence_tables(tmp_path: Path) -> None:
    from store.db import code_head, current_revision, upgrade_schema
    from store.engine import make_engine

    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade_schema(engine, "0006_raters")
    new = {"suppressed_token", "operation_pair", "pair_outcome"}
    with engine.begin() as conn:
        assert not new & set(inspect(conn).get_table_names())
        conn.execute(text(
            "INSERT INTO model (name, source, kind, family, n_layers, n_heads, n_kv_heads, d_model, vocab_size,"
            " created_at) VALUES ('old', 's', 'dir', 'llama', 1, 1, 1, 8, 10, '2024-01-01 00:00:00')"
        ))  # fmt: skip
        conn.execute(text('INSERT INTO head (model_id, layer, "index") VALUES (1, 0, 0)'))
        conn.execute(text(
            "INSERT INTO analysis (model_id, settings_key, settings, created_at) VALUES (1, 'k', '{}',"
            " '2024-01-01 00:00:00')"
        ))  # fmt: skip
        conn.execute(text("INSERT INTO salient_token VALUES (1, 1, 0, ' a', 3, 2.5)"))
        conn.execute(text("INSERT INTO mapped_token VALUES (1, 1, 0, 0, ' b', 4, 1.5)"))
    engine.dispose()
    with open_store(url) as store:
        assert current_revision(store.engine) == code_head() == "0008_review_skips"
        with store.engine.connect() as conn:
            assert new <= set(inspect(conn).get_table_names())
        (salient,) = store.get_head("old", 0, 0).salient
        assert salient.mappings[0].token == " b" and salient.suppressed == []
        assert store.pair_operations("old") == []
        with pytest.raises(NotFound, match="no operation 'copy' is scored for old"):
            store.head_pairs("old", 0, 0, "copy")
