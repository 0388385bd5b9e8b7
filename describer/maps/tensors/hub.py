"""A Hugging Face hub id resolved to a local directory holding only what analysis reads: the
safetensors shards and their index, the config and the tokenizer files."""

from __future__ import annotations

from pathlib import Path

from describer.errors import HeadmapsError

ALLOW = [
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
]


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot of ``repo_id`` (downloaded when missing); its name is the commit."""
    # huggingface_hub: only a hub id needs it.
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW))
    except Exception as exc:  # offline, unknown repo, gated repo: the hub raises many types
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise HeadmapsError(
            f"could not load {repo_id!r} from the Hugging Face hub ({type(exc).__name__}: {first})"
        ) from exc
    if not any(path.glob("*.safetensors")):
        raise HeadmapsError(f"{repo_id}: has no safetensors weights on the hub (use --weights full for .bin)")
    return path
