"""A 7B/8B-shaped model analysed from its files: peak memory and time per layer.

The benchmark writes a checkpoint of a real big model's shapes with random bf16 weights, as
sharded safetensors with a ``model.safetensors.index.json`` (2 GB shards), and runs the full
``headmaps analyze DIR --no-store --json`` on it (every head's salient operations, all 20
built-in operations, the attention patterns) as a fresh process, so peak RSS is the analysis'
alone:

- ``qwen2.5-7b``: Qwen2ForCausalLM, d=3584, 28 heads, 4 KV heads, MLP 18944, vocabulary 152,064,
  untied embeddings;
- ``llama-3.1-8b``: LlamaForCausalLM, d=4096, 32 heads, 8 KV heads, MLP 14336, untied
  embeddings, and a vocabulary of 152,064 rather than Llama's 128,256.

Both use the Qwen tokenizer of the local qwen2.5-coder GGUF: Llama's cannot be downloaded here,
and Qwen's special tokens (the prefix ``<|endoftext|>`` is id 151,643) need an embedding that
holds them. The bigger vocabulary makes the Llama-shaped measurement heavier, not lighter. ``--layers`` sets how many blocks the checkpoint has (the real model's count when
omitted). The baseline, measured in the same run, is ``--weights full``: the whole checkpoint
loaded by transformers (float32 where it fits, else bf16 with offloading), what ``analyze``
did before weights were streamed. It is skipped with ``--no-baseline`` (at 28 layers a float32
Qwen-7B needs 30 GB).

    python benchmarks/bench_big.py [--shape qwen2.5-7b] [--layers 4] [--no-patterns] [--no-baseline]
                                   [--keep DIR] [--device cpu|cuda] [--dtype float32]

On a GPU (``--device cuda``) the streamed run keeps the vocabulary matrices and, for each stage
of forward passes, the blocks on the device (``streaming.resident_budget``); the issue's target
there is the Llama-3.1-8B shape's whole analysis in 60 s or less.

Prints the checkpoint's size, each method's wall time, time per layer and peak RSS, the
ratios, and whether the two results agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_streaming import run, same  # noqa: E402  (one analyze process; the comparison)

SHAPES = {
    "qwen2.5-7b": dict(
        architectures=["Qwen2ForCausalLM"],
        model_type="qwen2",
        hidden_size=3584,
        intermediate_size=18944,
        num_attention_heads=28,
        num_key_value_heads=4,
        num_hidden_layers=28,
        vocab_size=152064,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
        hidden_act="silu",
        bos_token_id=151643,
        eos_token_id=151645,
        torch_dtype="bfloat16",
    ),
    "llama-3.1-8b": dict(
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        hidden_size=4096,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        num_hidden_layers=32,
        vocab_size=152064,  # Llama's is 128,256: see the module docstring
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=128000,
        eos_token_id=128001,
        torch_dtype="bfloat16",
    ),
}
SHARD_BYTES = 2 * 2**30


def tensor_shapes(config: dict) -> list[tuple[str, tuple[int, ...]]]:
    """Every weight of the checkpoint, in the order transformers names them."""
    d, f, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head_dim = d // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim
    bias = config["model_type"] == "qwen2"  # Qwen2 has q/k/v biases, Llama none
    shapes = [("model.embed_tokens.weight", (v, d))]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes += [
            (p + "input_layernorm.weight", (d,)),
            (p + "self_attn.q_proj.weight", (d, d)),
            (p + "self_attn.k_proj.weight", (kv, d)),
            (p + "self_attn.v_proj.weight", (kv, d)),
            (p + "self_attn.o_proj.weight", (d, d)),
        ]
        if bias:
            shapes += [(p + "self_attn.q_proj.bias", (d,)), (p + "self_attn.k_proj.bias", (kv,))]
            shapes += [(p + "self_attn.v_proj.bias", (kv,))]
        shapes += [
            (p + "post_attention_layernorm.weight", (d,)),
            (p + "mlp.gate_proj.weight", (f, d)),
            (p + "mlp.up_proj.weight", (f, d)),
            (p + "mlp.down_proj.weight", (d, f)),
        ]
    return shapes + [("model.norm.weight", (d,)), ("lm_head.weight", (v, d))]


def write_checkpoint(directory: Path, shape: str, layers: int | None, seed: int = 0) -> int:
    """Write the random bf16 checkpoint and the Qwen tokenizer into ``directory``; its bytes."""
    import torch
    from safetensors.torch import save_file

    from describer.maps.loading import load_model

    config = dict(SHAPES[shape])
    if layers is not None:
        config["num_hidden_layers"] = layers
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    shards: list[dict[str, str]] = []
    current: dict[str, object] = {}
    size = total = 0

    def flush() -> None:
        nonlocal current, size
        if current:
            name = f"model-{len(shards) + 1:05d}.safetensors"
            save_file(current, str(directory / name), metadata={"format": "pt"})
            shards.append({key: name for key in current})
            current, size = {}, 0

    for name, dims in tensor_shapes(config):
        if name.endswith("norm.weight"):
            t = 1.0 + 0.1 * torch.randn(dims, generator=generator)
        else:
            scale = 0.02 if not name.endswith("bias") else 0.1
            t = scale * torch.randn(dims, generator=generator)
        t = t.to(torch.bfloat16)
        nbytes = t.numel() * 2
        if size and size + nbytes > SHARD_BYTES:
            flush()
        current[name] = t
        size += nbytes
        total += nbytes
    flush()
    # Shards are numbered as they are written; rename them to transformers' "-of-N" form.
    n = len(shards)
    weight_map = {}
    for index, shard in enumerate(shards, start=1):
        old = directory / f"model-{index:05d}.safetensors"
        new = f"model-{index:05d}-of-{n:05d}.safetensors"
        old.rename(directory / new)
        weight_map.update({key: new for key in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    load_model("qwen2.5-coder-0.5b-instruct", weights="stream").tokenizer.save_pretrained(str(directory))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-7b")
    parser.add_argument(
        "--layers", type=int, default=None, help="blocks in the checkpoint (default: the real count)"
    )
    parser.add_argument("--no-patterns", dest="patterns", action="store_false")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    parser.add_argument("--dtype", default="float32", help="--dtype of the streamed run")
    parser.add_argument("--device", default="cpu", help="--device of both runs: cpu or cuda")
    parser.add_argument("--keep", type=Path, default=None, help="write (or reuse) the checkpoint here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp) / args.shape
        start = time.perf_counter()
        if (directory / "model.safetensors.index.json").exists():
            config = json.loads((directory / "config.json").read_text())
            total = json.loads((directory / "model.safetensors.index.json").read_text())["metadata"][
                "total_size"
            ]
            print(f"reusing {directory} ({config['num_hidden_layers']} layers)")
        else:
            total = write_checkpoint(directory, args.shape, args.layers)
            config = json.loads((directory / "config.json").read_text())
            print(f"wrote {directory} in {time.perf_counter() - start:.0f} s")
        layers = config["num_hidden_layers"]
        print(f"{args.shape}: {layers} layers, {total / 2**30:.2f} GiB of bf16 weights", flush=True)
        methods = ["stream"] + (["full"] if args.baseline else [])
        results = {}
        for weights in methods:
            out = Path(tmp) / f"{weights}.json"
            extra = ["--dtype", args.dtype] if weights == "stream" else []
            wall, rss = run(str(directory), weights, out, args.patterns, extra, device=args.device)
            results[weights] = (wall, rss, json.loads(out.read_text()))
            print(
                f"{weights:>6}: {wall:7.1f} s ({wall / layers:6.1f} s per layer)   peak RSS {rss:5.2f} GiB",
                flush=True,
            )
    if "full" in results:
        (ws, rs, a), (wf, rf, b) = results["stream"], results["full"]
        print(f"stream / full: time {ws / wf:.2f}x, peak RSS {rs / rf:.2f}x")
        diffs = same(a, b)
        print("results: identical" if not diffs else f"results differ: {', '.join(diffs[:10])}")


if __name__ == "__main__":
    main()
