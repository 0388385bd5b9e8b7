"""Every adapter reproduces its model's own forward pass, head by head.

The quantities MAPS reads from an adapter (embeddings, per-head value/output matrices, norms,
the first MLP, the unembedding) are recomputed from weights alone and compared with what each
family's model actually computed (``tests/_fidelity.py`` builds and runs the models).
"""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import Tensor, nn

from describer.maps.adapters import UnsupportedArchitecture, adapter_for, supported_families
from tests._fidelity import (
    FAMILIES,
    SEQ,
    VOCAB,
    Run,
    assert_close,
    attn_block_out,
    mlp_block_out,
    proj_rows,
    run,
)
from tests._real import REAL_MODELS

NAMES = list(FAMILIES) + [pytest.param(f"real:{alias}", marks=pytest.mark.slow) for alias in REAL_MODELS]


@pytest.fixture(scope="module", params=NAMES)
def r(request) -> Run:
    return run(request.param)


# --- the checks --------------------------------------------------------------------------


def test_registered(r: Run) -> None:
    assert type(r.adapter).__name__ != "Adapter"
    assert r.adapter.model is r.model
    a = r.adapter
    cfg = r.model.config
    assert (a.n_layers, a.n_heads, a.d_model) == (
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.hidden_size,
    )
    assert a.vocab_size == cfg.vocab_size


def test_residual_stream_bookkeeping(r: Run) -> None:
    """hidden_states[L] is the layer input, and each layer adds exactly attention + MLP."""
    for L in range(r.adapter.n_layers):
        got = r.residual[L] + attn_block_out(r, L) + mlp_block_out(r, L)
        assert_close(got, r.residual[L + 1], f"residual after layer {L}")


def test_embedding(r: Run) -> None:
    emb = r.adapter.embedding()
    assert emb.dtype == torch.float32 and emb.shape == (r.model.config.vocab_size, r.adapter.d_model)
    expected = r.residual[0]
    if isinstance(r.model, transformers.GPT2LMHeadModel):
        expected = expected - r.model.transformer.wpe.weight[: r.ids.shape[1]]
    assert_close(emb[r.ids], expected, "embedding")


def test_heads_ov(r: Run) -> None:
    """(b) each head's output from W_V, b_V, W_O and the model's attention pattern."""
    a = r.adapter
    hd = a.head_dim
    for L in range(a.n_layers):
        lw = a.layer(L)
        x = r.residual[L]
        xn = lw.attn_norm(x)
        for pname in r.fam.qkv_modules(r.fam.block(r.model, L)):
            # The projections read exactly the adapter's normed residual: hidden_states[L] is the input.
            assert_close(xn, r.captured[("qkv", L, pname, "in")], f"attn norm L{L}")
        assert lw.W_V.shape == (a.n_kv_heads, a.d_model, hd)
        assert lw.W_O.shape == (a.n_heads, hd, a.d_model)
        concat = r.captured[("o", L, "in")]
        proj = a.out_proj_module(L)
        A = r.out.attentions[L]
        assert A.shape == (*r.ids.shape[:1], a.n_heads, r.ids.shape[1], r.ids.shape[1])
        for h in range(a.n_heads):
            g = a.kv_head(h)
            v = xn @ lw.W_V[g]
            if lw.b_V is not None:
                v = v + lw.b_V[g]
            z = A[:, h] @ v
            model_z = concat[..., h * hd : (h + 1) * hd]
            assert_close(z, model_z, f"z L{L} h{h}")
            out_h = z @ lw.W_O[h]
            assert_close(out_h, model_z @ proj_rows(proj, h, hd), f"out L{L} h{h}")


def _heads_sum(r: Run, L: int) -> tuple[Tensor, list[Tensor]]:
    a, lw = r.adapter, r.adapter.layer(L)
    xn = lw.attn_norm(r.residual[L])
    A = r.out.attentions[L]
    zs = []
    for h in range(a.n_heads):
        g = a.kv_head(h)
        v = xn @ lw.W_V[g] + (lw.b_V[g] if lw.b_V is not None else 0)
        zs.append(A[:, h] @ v)
    total = sum(z @ lw.W_O[h] for h, z in enumerate(zs))
    if lw.b_O is not None:
        total = total + lw.b_O
    return total, zs


def test_attention_block_output(r: Run) -> None:
    """(c) heads summed (+ b_O), then the post-attention norm, is what the residual receives."""
    a = r.adapter
    for L in range(a.n_layers):
        lw = a.layer(L)
        total, zs = _heads_sum(r, L)
        assert_close(total, r.captured[("attn", L, "out")], f"attention module output L{L}")
        received = r.residual[L + 1] - r.residual[L] - mlp_block_out(r, L)
        if lw.post_attn_norm is None:
            assert r.fam.post_attn_norm is None
            assert torch.equal(lw.W_O_folded(), lw.W_O)
            assert_close(total, received, f"attention into residual L{L}")
            continue
        assert r.fam.post_attn_norm is not None
        post = lw.post_attn_norm(total)
        assert_close(post, r.captured[("attn_post", L, "out")], f"post-attention norm L{L}")
        assert_close(post, received, f"attention into residual L{L}")
        # MAPS projects W_O_folded, which drops only the per-token 1/rms of the summed pre-norm
        # output: post = w * s / rms(s) with s = sum_h z_h W_O[h] (+ b_O), so the head shares
        # z_h W_O_folded[h] / rms(s) (+ the bias's share) sum to the post-norm output exactly.
        assert lw.post_attn_norm.kind == "rms"
        s = r.captured[("attn_post", L, "in")]
        rms = torch.sqrt(s.pow(2).mean(-1, keepdim=True) + lw.post_attn_norm.eps)
        W = lw.W_O_folded()
        shares = [z @ W[h] / rms for h, z in enumerate(zs)]
        for h, z in enumerate(zs):
            assert_close(shares[h], lw.post_attn_norm.weight * (z @ lw.W_O[h]) / rms, f"share L{L} h{h}")
        total_share = sum(shares)
        if lw.b_O is not None:
            total_share = total_share + lw.post_attn_norm.fold(lw.b_O) / rms
        assert_close(total_share, r.captured[("attn_post", L, "out")], f"folded shares L{L}")


def test_final_logits(r: Run) -> None:
    """(d) final norm then unembedding (then soft-cap) gives the model's logits."""
    a = r.adapter
    x = r.residual[-1]
    logits = a.final_norm()(x) @ a.unembedding()
    cap = a.final_logit_softcap()
    if isinstance(r.model, transformers.Gemma2ForCausalLM):
        assert cap, "Gemma 2 soft-caps its logits"
    if cap:
        logits = cap * torch.tanh(logits / cap)
    assert a.unembedding().shape == (a.d_model, r.model.config.vocab_size)
    assert_close(logits, r.out.logits, "logits")


def test_mlp0(r: Run) -> None:
    """(e) block 0's MLP sub-path, with and without its norms."""
    a = r.adapter
    x = r.captured[("mlp_pre", 0, "in")]
    parallel = r.fam.parallel(r.model.config)
    expected_in = r.residual[0] if parallel else r.residual[0] + attn_block_out(r, 0)
    assert_close(x, expected_in, "pre-MLP residual")
    assert_close(a.mlp0_pre_norm()(x), r.captured[("mlp", 0, "in")], "pre-MLP norm")
    assert_close(a.mlp0(x, pre_norm=True, post_norm=True), mlp_block_out(r, 0), "mlp0 with norms")
    assert (a.mlp0_post_norm() is not None) == (r.fam.mlp_post_norm is not None)
    y = torch.randn(5, a.d_model, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        raw = r.fam.mlp(r.fam.block(r.model, 0))(y)
        assert_close(a.mlp0(y, pre_norm=False, post_norm=False), raw, "mlp0 without norms")


def test_qk_weights(r: Run) -> None:
    """(f) W_Q, W_K and W_V reproduce the projections' own outputs, head by head (pre-RoPE)."""
    a = r.adapter
    nh, nkv, hd = a.n_heads, a.n_kv_heads, a.head_dim
    for L in range(a.n_layers):
        lw = a.layer(L)
        modules = r.fam.qkv_modules(r.fam.block(r.model, L))
        xn = r.captured[("qkv", L, next(iter(modules)), "in")]
        with torch.no_grad():
            outs = {n: m(xn) for n, m in modules.items()}
            zero = {n: m(torch.zeros_like(xn[:1, :1])).expand_as(outs[n]) for n, m in modules.items()}
        q, k, v = r.fam.split_qkv(outs, nh, nkv, hd)
        bq, bk, _ = r.fam.split_qkv(zero, nh, nkv, hd)  # each projection's bias, in its layout
        assert lw.W_Q.shape == (nh, a.d_model, hd) and lw.W_K.shape == (nkv, a.d_model, hd)
        for h in range(nh):
            assert_close(xn @ lw.W_Q[h] + bq[:, :, h], q[:, :, h], f"q L{L} h{h}")
        for g in range(nkv):
            assert_close(xn @ lw.W_K[g] + bk[:, :, g], k[:, :, g], f"k L{L} g{g}")
            bv = lw.b_V[g] if lw.b_V is not None else 0
            assert_close(xn @ lw.W_V[g] + bv, v[:, :, g], f"v L{L} g{g}")


def test_norm_fold(r: Run) -> None:
    """``Norm.fold`` drops only a positive per-token scalar; ``fold_into_columns`` is the same map."""
    a = r.adapter
    x = r.residual[0]
    W = a.layer(0).W_V[0]
    for what, norm in (("attn norm", a.layer(0).attn_norm), ("final norm", a.final_norm())):
        centred = x - x.mean(-1, keepdim=True) if norm.kind == "layer" else x
        inv = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + norm.eps)
        full = norm(x) - (norm.bias if norm.bias is not None else 0)
        assert_close(norm.fold(x) * inv, full, f"{what} fold")
        assert_close(x @ norm.fold_into_columns(W), norm.fold(x) @ W, f"{what} fold_into_columns")


@pytest.mark.parametrize("config_cls", ["GemmaConfig", "Gemma2Config", "Gemma3TextConfig"])
def test_gemma_embedding_scale_rounding_bf16(config_cls: str) -> None:
    """Gemma multiplies by ``sqrt(d)`` rounded to the weights' dtype, not by the exact root.

    With d = 40, bf16(sqrt(40)) = 6.3125 vs 6.3246: the exact root is off by ~0.2%, while the
    adapter's (float32) embeddings round to exactly what a bf16 model feeds layer 0.
    """
    torch.manual_seed(0)
    config = getattr(transformers, config_cls)(
        vocab_size=VOCAB,
        hidden_size=40,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        num_hidden_layers=1,
        intermediate_size=64,
    )
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model = model.to(torch.bfloat16).eval()
    ids = torch.randint(0, VOCAB, (1, SEQ), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        h0 = model(ids, output_hidden_states=True).hidden_states[0]
    emb = adapter_for(model).embedding()
    assert emb.dtype == torch.float32
    assert torch.equal(emb.bfloat16()[ids], h0)
    exact_root = model.model.embed_tokens.weight.detach().float() * 40**0.5
    assert not torch.equal(exact_root.bfloat16()[ids], h0)


def test_every_family_is_covered() -> None:
    covered = {getattr(transformers, f.config_cls).model_type for f in FAMILIES.values()}
    # gemma3 (the multimodal wrapper) shares gemma3_text's adapter; its text model is what runs.
    assert set(supported_families()) - {"gemma3"} <= covered


def test_unsupported_architecture() -> None:
    config = transformers.BertConfig(
        vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    model = transformers.BertForMaskedLM(config)
    with pytest.raises(UnsupportedArchitecture) as info:
        adapter_for(model)
    message = str(info.value)
    assert "bert" in message
    for family in supported_families():
        assert family in message


def test_unsupported_fake_config() -> None:
    class Fake(nn.Module):
        config = type("Config", (), {"model_type": "not_a_model"})()

    with pytest.raises(UnsupportedArchitecture, match="supported families: .*llama"):
        adapter_for(Fake())
