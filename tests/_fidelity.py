"""The adapters' fidelity tests' machinery: tiny models of every family, run with hooks.

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

import torch
import transformers
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from describer.maps.adapters import adapter_for
from describer.maps.adapters.base import Adapter
from tests._real import real_model

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
