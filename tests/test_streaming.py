"""The streamed analyzer (weights read block by block from safetensors files) gives the same
results as the analyzer over the loaded model, family by family, for every source."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from describer.maps.adapters import adapter_for
from describer.maps.analyzer import Analyzer
from describer.maps.operations import Operation, TokenizedOperation
from describer.maps.settings import AnalysisSettings
from describer.maps.streaming import Materializer, skeleton_of
from describer.maps.tensors import SafetensorsFiles
from tests._fidelity import FAMILIES, VOCAB, build


class IdTokenizer:
    """Token texts for a random model: ``t<id>``; ``<s>`` (id 1) is the BOS."""

    bos_token_id, bos_token = 1, "<s>"
    all_special_ids = [0, 1]

    def batch_decode(self, ids: list[list[int]]) -> list[str]:
        return [f"t{row[0]}" for row in ids]


def operations(seed: int = 0) -> list[TokenizedOperation]:
    gen = torch.Generator().manual_seed(seed)
    ops = []
    for index, k in enumerate((1, 3, 10)):
        src = torch.randint(2, VOCAB, (40,), generator=gen).tolist()
        tgt = torch.randint(2, VOCAB, (40,), generator=gen).tolist()
        op = Operation(
            name=f"op{index}", category="custom", pairs=tuple(zip(map(str, src), map(str, tgt), strict=True))
        )
        ops.append(TokenizedOperation(op, k, tuple(src), tuple(tgt), 0))
    return ops


def streamed(
    directory: Path, *, resident_bytes: int = 2 << 30, dtype: torch.dtype = torch.float32
) -> tuple[object, Materializer]:
    tensors = SafetensorsFiles(directory)
    skeleton = skeleton_of(tensors.config, dtype)
    skeleton.set_attn_implementation("eager")
    plain = adapter_for(skeleton)
    weights = Materializer(
        skeleton,
        tensors,
        blocks=[plain.block_prefix(i) for i in range(plain.n_layers)],
        vocab_names=[
            plain._qualname(plain.embedding_module()) + ".weight",
            plain._qualname(plain.unembedding_module()) + ".weight",
        ],
        device=torch.device("cpu"),
        resident_bytes=resident_bytes,
    )
    return adapter_for(skeleton, tensors, weights), weights


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.nn.Module, Path]]:
    out = {}
    for name in FAMILIES:
        model = build(name)
        directory = tmp_path_factory.mktemp(name.replace("-", "_"))
        model.save_pretrained(directory, max_shard_size="60KB")
        out[name] = (model, directory)
    return out


def run(adapter: object, settings: AnalysisSettings, **budget: int) -> tuple[list, list]:
    analyzer = Analyzer(adapter, IdTokenizer(), settings, **budget)
    return analyzer.analyze(operations(), with_salient=True)


def assert_same(a: tuple[list, list], b: tuple[list, list], exact: bool) -> None:
    heads_a, scores_a = a
    heads_b, scores_b = b
    for sa, sb in zip(scores_a, scores_b, strict=True):
        if exact:
            assert sa.scores == sb.scores and sa.suppression == sb.suppression, sa.name
        else:  # other chunk shapes round the logits differently: at most one pair may move
            for ra, rb in zip(sa.scores, sb.scores, strict=True):
                assert max(abs(x - y) for x, y in zip(ra, rb, strict=True)) <= 1 / sa.n_pairs + 1e-9
    assert len(heads_a) == len(heads_b)
    for ha, hb in zip(heads_a, heads_b, strict=True):
        ids_a = [t.token_id for t in ha.salient]
        ids_b = [t.token_id for t in hb.salient]
        if exact:
            assert ids_a == ids_b, (ha.layer, ha.head)
        else:
            assert len(set(ids_a) & set(ids_b)) >= len(ids_a) - 1, (ha.layer, ha.head)
        for ta, tb in zip(ha.salient, hb.salient, strict=True):
            if ta.token_id != tb.token_id:
                continue
            assert ta.amplification == pytest.approx(tb.amplification, rel=1e-5)
            if exact:
                assert [m.token_id for m in ta.mappings] == [m.token_id for m in tb.mappings]
                for ma, mb in zip(ta.mappings, tb.mappings, strict=True):
                    assert ma.logit == pytest.approx(mb.logit, rel=1e-5, abs=1e-5)


SOURCES = {
    "paper": dict(source="mlp0", mlp_norm=True, attn_norm=False, fold_norms=False),
    "embed+mlp0": dict(source="embed+mlp0"),
    "residual": dict(source="residual", salient_candidates=16),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("source", list(SOURCES))
def test_streamed_equals_loaded(checkpoints: dict, family: str, source: str) -> None:
    model, directory = checkpoints[family]
    settings = AnalysisSettings(readable_only=False, top_tokens=6, top_mappings=4, **SOURCES[source])
    loaded = run(adapter_for(model), settings)
    adapter, weights = streamed(directory)
    assert weights.loads > 0
    assert_same(loaded, run(adapter, settings), exact=True)
    # Blocks are dropped once read: nothing but the small outside tensors stays loaded (a
    # residual source's forward passes keep a small model's blocks; measured separately).
    if source != "residual":
        live = [n for n, p in adapter.model.named_parameters() if not p.is_meta]
        assert all(not any(n.startswith(b) for b in weights.blocks) for n in live), live


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3_text", "gpt_neox"])
def test_tiny_budgets_change_nothing_but_rounding(checkpoints: dict, family: str) -> None:
    """Pairs in many batches, the vocabulary in small chunks, the source cache on disk and the
    forward passes loading one block at a time: the same results up to rounding."""
    model, directory = checkpoints[family]
    settings = AnalysisSettings(readable_only=False, top_tokens=6, top_mappings=4, **SOURCES["embed+mlp0"])
    loaded = run(adapter_for(model), settings)
    adapter, _ = streamed(directory)
    small = run(adapter, settings, chunk_elements=1 << 11, pair_bytes=4096, cache_bytes=0)
    assert_same(loaded, small, exact=False)
    residual = AnalysisSettings(readable_only=False, top_tokens=6, top_mappings=4, **SOURCES["residual"])
    adapter, weights = streamed(directory, resident_bytes=0)
    assert_same(run(adapter_for(model), residual), run(adapter, residual), exact=True)
    assert all(p.is_meta for n, p in adapter.model.named_parameters() if n.startswith(weights.blocks[0]))


def test_bf16_checkpoint_streams_in_its_own_dtype(checkpoints: dict, tmp_path: Path) -> None:
    """A bfloat16 checkpoint stays bfloat16 on disk; the analysis computes in float32 exactly as
    over the model loaded (and upcast) by transformers."""
    from transformers import AutoModelForCausalLM

    model, _ = checkpoints["qwen2"]
    model.to(torch.bfloat16).save_pretrained(tmp_path)
    model.float()
    tensors = SafetensorsFiles(tmp_path)
    assert tensors.stored_dtype("model.layers.0.self_attn.v_proj.weight") == "BF16"
    upcast = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32, attn_implementation="eager")
    settings = AnalysisSettings(readable_only=False, top_tokens=6, top_mappings=4, source="embed+mlp0")
    adapter, _ = streamed(tmp_path)
    assert_same(run(adapter_for(upcast), settings), run(adapter, settings), exact=True)


def test_full_load_too_big_for_float32_keeps_the_stored_dtype_and_says_so(
    checkpoints: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, word_tokenizer: object
) -> None:
    """``--weights full`` on a checkpoint whose float32 copy would not fit in 60 % of memory:
    loaded in its stored dtype (bf16) with accelerate's device_map, the output says so, and the
    analysis over it equals the streamed one in bf16 (``--dtype bfloat16``: block 0's MLP runs in
    the model's dtype, everything else in float32)."""
    from describer.maps import loading

    model, _ = checkpoints["qwen2"]
    model.to(torch.bfloat16).save_pretrained(tmp_path)
    model.float()
    word_tokenizer.save_pretrained(tmp_path)
    monkeypatch.setattr(loading, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(loading, "_memory_bytes", lambda: 1 << 10)  # "1 kB of RAM"
    loaded = loading.load_model(str(tmp_path), weights="full")
    assert loaded.note is not None and "stored dtype (torch.bfloat16)" in loaded.note
    assert "device_map='auto'" in loaded.note and "float32 would need" in loaded.note
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    settings = AnalysisSettings(readable_only=False, top_tokens=6, top_mappings=4, source="embed+mlp0")
    adapter, _ = streamed(tmp_path, dtype=torch.bfloat16)
    assert_same(run(adapter_for(loaded.model), settings), run(adapter, settings), exact=True)
    # With room for float32 the same directory loads in float32, with no note.
    monkeypatch.setattr(loading, "_memory_bytes", lambda: 1 << 40)
    plain = loading.load_model(str(tmp_path), weights="full")
    assert plain.note is None and next(plain.model.parameters()).dtype == torch.float32


def test_blocks_kept_for_forward_passes_are_dropped_when_the_stage_ends(checkpoints: dict) -> None:
    """A small model's blocks are loaded once for a stage of forward passes (every batch of
    residual sources, a sweep, the attention patterns) and dropped when it ends, so they do not
    sit in memory beside the next stage's buffers."""
    _, directory = checkpoints["llama"]
    adapter, weights = streamed(directory)
    settings = AnalysisSettings(readable_only=False, top_tokens=6, top_mappings=4, **SOURCES["residual"])
    per_block = len([n for n in weights._params if n.startswith(weights.blocks[0])])
    with Analyzer(adapter, IdTokenizer(), settings) as analyzer:
        analyzer.residual.batch_size = 8  # many batches: the blocks must still be read once
        before = weights.loads
        analyzer.residual.ensure(torch.arange(40))
        assert weights.loads - before == per_block * len(weights.blocks)
        assert all(p.is_meta for n, p in adapter.model.named_parameters() if n.startswith(weights.blocks[0]))
        analyzer.residual.ensure(torch.arange(40))  # nothing new to run: nothing read
        assert weights.loads - before == per_block * len(weights.blocks)
    with adapter.running():  # as the attention patterns run their chunks
        for _ in range(3):
            adapter.model.base_model(**adapter.forward_inputs(torch.tensor([[1, 5, 6, 7]])), use_cache=False)
        assert weights.loads - before == 2 * per_block * len(weights.blocks)  # once for the three
    live = [n for n, p in adapter.model.named_parameters() if not p.is_meta]
    assert not any(n.startswith(tuple(weights.blocks)) for n in live), live
