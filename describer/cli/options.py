"""The options several commands share, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

ModelArg = Annotated[
    str | None,
    typer.Argument(
        help="Alias (see `headmaps models`), .gguf file, model directory or hub id. Default: gemma-3-270m."
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
WeightsOpt = Annotated[
    str,
    typer.Option(
        "--weights",
        help="stream: read each block's weights from the files when it is analysed (memory: one block, "
        "whatever the model's size); full: load the whole model first (float32 where it fits).",
    ),
]
DtypeOpt = Annotated[
    str,
    typer.Option(
        help="Compute dtype of the streamed blocks: float32 (exact), bfloat16 or float16 (half the "
        "memory; on a GPU, faster). The weights keep their stored dtype on disk."
    ),
]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        help="Source representation: embed, mlp0, embed+mlp0, residual (the stream entering each layer "
        "when the model reads [BOS, token]), or paper (the MAPS code's exact recipe). Default: per family."
    ),
]
NormsOpt = Annotated[
    bool | None,
    typer.Option("--norms/--no-norms", help="All three norm parts below on or off. Default: per family."),
]
MlpNormOpt = Annotated[
    bool | None,
    typer.Option("--mlp-norm/--no-mlp-norm", help="Block 0's norms around its MLP (mlp0 sources)."),
]
AttnNormOpt = Annotated[
    bool | None,
    typer.Option("--attn-norm/--no-attn-norm", help="The layer's pre-attention norm on the source."),
]
FoldNormsOpt = Annotated[
    bool | None,
    typer.Option(
        "--fold-norms/--no-fold-norms", help="Fold the post-attention and final norms into W_O and W_U."
    ),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (sqlite:///file.db, postgresql://…) or a SQLite file path. "
        "Default: $HEADMAPS_DATABASE_URL, else headmaps.db in the user data directory.",
    ),
]

# The LLM endpoint options, shared by every command that asks an LLM (describe, evaluate descriptions).
LlmModelOpt = Annotated[
    str | None,
    typer.Option(
        envvar="HEADMAPS_LLM_MODEL",
        help="Model name at the endpoint (e.g. gpt-4o). Default: the local qwen2.5-coder-0.5b-instruct.",
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        envvar="HEADMAPS_LLM_BASE_URL",
        help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 (key from OPENAI_API_KEY or "
        "HEADMAPS_LLM_API_KEY). Default: a local server headmaps starts itself.",
    ),
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Requests in flight at once. Default: 8, or 1 for the local model."),
]
