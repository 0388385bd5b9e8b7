"""Every adapter reproduces its model's own forward pass, head by head.

For each family a tiny randomly initialised model is run on random tokens with hooks, and the
quantities MAPS reads from the adapter (embeddings, per-head value/output matrices, norms,
the first MLP, the unembedding) are recomputed from weights alone and compared with what the
model actually computed. Norm weights and all biases get random noise first, so that a
folding or offset bug cannot hide behind all-ones / all-zeros initialisation.

The per-family module names below are written independently of the adapters on purpose: the
adapters are checked against transformers' own modules, not against themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import transformers
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from describer.maps.adapters import UnsupportedArchitecture, adapter_for, supported_families
from describer.maps.adapters.base import Adapter
from tests._real import REAL_MODELS, real_model

TOL = 1e-4
SEQ = 7
BATCH = 2
VOCAB = 257
COMMON = dict(vocab_size=VOCAB, initializer_range=0.1)
LLAMA_LIKE = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=3,
    intermediate_size=128,
    max_position_embeddings=64,
    **COMMON,
)


def rel(a: Tensor, b: Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def assert_close(a: Tensor, b: Tensor, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    err = rel(a, b)
    assert err <= TOL, f"{what}: relative error {err:.2e}"


# --- how each family's modules are named (independent of the adapters) --------------------


@dataclass
class Family:
    config_cls: str
    config: dict
    block: Callable[[nn.Module, int], nn.Module]
    final_norm: Callable[[nn.Module], nn.Module]
    qkv_modules: Callable[[nn.Module], dict[str, nn.Module]]
    """Projection modules (on the block) whose outputs hold q, k, v."""
    split_qkv: Callable[[dict[str, Tensor], int, int, int], tuple[Tensor, Tensor, Tensor]]
    """Captured projection outputs -> q [B,T,nh,hd], k [B,T,nkv,hd], v [B,T,nkv,hd]."""
    mlp_pre_norm: Callable[[nn.Module], nn.Module]
    mlp: Callable[[nn.Module], nn.Module]
    mlp_post_norm: Callable[[nn.Module], nn.Module] | None = None
    post_attn_norm: Callable[[nn.Module], nn.Module] | None = None
    parallel: Callable[[object], bool] = lambda config: False


def _llama_split(out: dict[str, Tensor], nh: int, nkv: int, hd: int) -> tuple[Tensor, Tensor, Tensor]:
    B, T = out["q_proj"].shape[:2]
    return (
        out["q_proj"].view(B, T, nh, hd),
        out["k_proj"].view(B, T, nkv, hd),
        out["v_proj"].view(B, T, nkv, hd),
    )


def _gpt2_split(out: dict[str, Tensor], nh: int, nkv: int, hd: int) -> tuple[Tensor, Tensor, Tensor]:
    # As GPT2Attention.forward: c_attn(x).split(embed_dim, dim=2), then view per head.
    fused = out["c_attn"]
    B, T = fused.shape[:2]
    q, k, v = fused.split(nh * hd, dim=2)
    return q.view(B, T, nh, hd), k.view(B, T, nkv, hd), v.view(B, T, nkv, hd)


def _neox_split(out: dict[str, Tensor], nh: int, nkv: int, hd: int) -> tuple[Tensor, Tensor, Tensor]:
    # As GPTNeoXAttention.forward: view(..., -1, 3 * head_size) then chunk(3, dim=-1).
    fused = out["query_key_value"]
    B, T = fused.shape[:2]
    q, k, v = fused.view(B, T, nh, 3 * hd).chunk(3, dim=-1)
    return q, k, v


def _phi3_split(out: dict[str, Tensor], nh: int, nkv: int, hd: int) -> tuple[Tensor, Tensor, Tensor]:
    # As Phi3Attention.forward: [Q | K | V] blocks along the output.
    fused = out["qkv_proj"]
    B, T = fused.shape[:2]
    q = fused[..., : nh * hd]
    k = fused[..., nh * hd : (nh + nkv) * hd]
    v = fused[..., (nh + nkv) * hd :]
    return q.view(B, T, nh, hd), k.view(B, T, nkv, hd), v.view(B, T, nkv, hd)


def _pre_ff(block: nn.Module) -> nn.Module:
    return block.pre_feedforward_layernorm


def _post_attn(block: nn.Module) -> nn.Module:
    return block.post_attention_layernorm


def _llama_family(config_cls: str, sandwich: bool = False, **overrides: object) -> Family:
    return Family(
        config_cls=config_cls,
        config={**LLAMA_LIKE, **overrides},
        block=lambda m, i: m.model.layers[i],
        final_norm=lambda m: m.model.norm,
        qkv_modules=lambda b: {n: getattr(b.self_attn, n) for n in ("q_proj", "k_proj", "v_proj")},
        split_qkv=_llama_split,
        # Sandwich blocks (Gemma 2/3) name their pre-MLP norm differently and norm both outputs.
        mlp_pre_norm=_pre_ff if sandwich else _post_attn,
        mlp=lambda b: b.mlp,
        mlp_post_norm=(lambda b: b.post_feedforward_layernorm) if sandwich else None,
        post_attn_norm=_post_attn if sandwich else None,
    )


_neox = dict(
    config_cls="GPTNeoXConfig",
    block=lambda m, i: m.gpt_neox.layers[i],
    final_norm=lambda m: m.gpt_neox.final_layer_norm,
    qkv_modules=lambda b: {"query_key_value": b.attention.query_key_value},
    split_qkv=_neox_split,
    mlp_pre_norm=lambda b: b.post_attention_layernorm,
    mlp=lambda b: b.mlp,
    parallel=lambda config: bool(config.use_parallel_residual),
)
_neox_config = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_hidden_layers=3,
    intermediate_size=128,
    max_position_embeddings=64,
    rotary_pct=0.25,
    **COMMON,
)

FAMILIES: dict[str, Family] = {
    "gpt2": Family(
        config_cls="GPT2Config",
        config=dict(n_embd=64, n_head=4, n_layer=3, n_inner=128, n_positions=64, **COMMON),
        block=lambda m, i: m.transformer.h[i],
        final_norm=lambda m: m.transformer.ln_f,
        qkv_modules=lambda b: {"c_attn": b.attn.c_attn},
        split_qkv=_gpt2_split,
        mlp_pre_norm=lambda b: b.ln_2,
        mlp=lambda b: b.mlp,
    ),
    "gpt_neox": Family(config=dict(_neox_config), **_neox),
    # Pythia is parallel; the sequential variant checks that the pre-MLP residual is right too.
    "gpt_neox-sequential": Family(config=dict(_neox_config, use_parallel_residual=False), **_neox),
    "llama": _llama_family("LlamaConfig"),
    "llama-bias": _llama_family("LlamaConfig", attention_bias=True),
    "mistral": _llama_family("MistralConfig"),
    "qwen2": _llama_family("Qwen2Config"),  # q/k/v biases are always on in Qwen2
    "qwen3": _llama_family("Qwen3Config", head_dim=24),
    # Gemma's head_dim differs from d_model / n_heads; keep that here so shapes can't be confused.
    "gemma": _llama_family("GemmaConfig", head_dim=24),
    "gemma2": _llama_family("Gemma2Config", sandwich=True, head_dim=24, sliding_window=4),
    "gemma3_text": _llama_family("Gemma3TextConfig", sandwich=True, head_dim=24, sliding_window=4),
    "phi3": Family(
        config_cls="Phi3Config",
        config=dict(LLAMA_LIKE, pad_token_id=0),
        block=lambda m, i: m.model.layers[i],
        final_norm=lambda m: m.model.norm,
        qkv_modules=lambda b: {"qkv_proj": b.self_attn.qkv_proj},
        split_qkv=_phi3_split,
        mlp_pre_norm=lambda b: b.post_attention_layernorm,
        mlp=lambda b: b.mlp,
    ),
}


# --- building and running a model -------------------------------------------------------


def build(name: str) -> nn.Module:
    fam = FAMILIES[name]
    torch.manual_seed(0)
    config = getattr(transformers, fam.config_cls)(**fam.config)
    config._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model = model.float().eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            leaf = pname.rsplit(".", 1)
            is_norm = "norm" in pname or "ln_" in pname
            if leaf[-1] == "bias" or is_norm:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model


@dataclass
class Run:
    model: nn.Module
    adapter: Adapter
    fam: Family
    ids: Tensor
    out: object
    residual: list[Tensor]
    """Input to each layer, then the final norm's input: the residual stream, pre-norm."""
    captured: dict[tuple, Tensor]


def run(name: str) -> Run:
    if name.startswith("real:"):
        return run_real(name.removeprefix("real:"))
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(2))
    return capture(build(name), FAMILIES[name], ids)


def run_real(alias: str) -> Run:
    """The same checks on real weights: a short real sentence through the loaded model."""
    loaded = real_model(alias)
    model = loaded.model
    model.set_attn_implementation("eager")
    ids = loaded.tokenizer("The capital of France is Paris, and", return_tensors="pt").input_ids
    return capture(model, FAMILIES[loaded.family], ids)


def capture(model: nn.Module, fam: Family, ids: Tensor) -> Run:
    adapter = adapter_for(model)
    captured: dict[tuple, Tensor] = {}
    handles = []

    def keep_in(key: tuple):
        def hook(module, args):
            captured[key] = args[0].detach().clone()

        return hook

    def keep_out(key: tuple):
        def hook(module, args, output):
            captured[key] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        return hook

    def on(module: nn.Module, key: tuple, inputs: bool = False, outputs: bool = True) -> None:
        if inputs:
            handles.append(module.register_forward_pre_hook(keep_in(key + ("in",))))
        if outputs:
            handles.append(module.register_forward_hook(keep_out(key + ("out",))))

    for L in range(adapter.n_layers):
        block = fam.block(model, L)
        on(adapter.out_proj_module(L), ("o", L), inputs=True)
        on(adapter.attention_module(L), ("attn", L))
        for pname, module in fam.qkv_modules(block).items():
            on(module, ("qkv", L, pname), inputs=True)
        on(fam.mlp_pre_norm(block), ("mlp_pre", L), inputs=True)
        on(fam.mlp(block), ("mlp", L), inputs=True)
        if fam.mlp_post_norm:
            on(fam.mlp_post_norm(block), ("mlp_post", L))
        if fam.post_attn_norm:
            on(fam.post_attn_norm(block), ("attn_post", L), inputs=True)
    on(fam.final_norm(model), ("final",), inputs=True)
    try:
        with torch.no_grad():
            out = model(ids, output_hidden_states=True, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    hidden = out.hidden_states
    assert len(hidden) == adapter.n_layers + 1
    residual = [h.detach() for h in hidden[:-1]] + [captured[("final", "in")]]
    return Run(model, adapter, fam, ids, out, residual, captured)


def mlp_block_out(r: Run, L: int) -> Tensor:
    """What the MLP sub-block adds to the residual stream."""
    return r.captured[("mlp_post", L, "out")] if r.fam.mlp_post_norm else r.captured[("mlp", L, "out")]


def attn_block_out(r: Run, L: int) -> Tensor:
    """What the attention sub-block adds to the residual stream, from the model's modules."""
    return r.captured[("attn_post", L, "out")] if r.fam.post_attn_norm else r.captured[("attn", L, "out")]


def proj_rows(module: nn.Module, h: int, hd: int) -> Tensor:
    """The output projection's rows read by head ``h``, as ``[hd, d]``, from the module itself."""
    if isinstance(module, Conv1D):
        return module.weight[h * hd : (h + 1) * hd, :]
    assert isinstance(module, nn.Linear)
    return module.weight[:, h * hd : (h + 1) * hd].T


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
    assert_close(a.mlp0(x, norms=True), mlp_block_out(r, 0), "mlp0 with norms")
    assert (a.mlp0_post_norm() is not None) == (r.fam.mlp_post_norm is not None)
    y = torch.randn(5, a.d_model, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        raw = r.fam.mlp(r.fam.block(r.model, 0))(y)
        assert_close(a.mlp0(y, norms=False), raw, "mlp0 without norms")


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
