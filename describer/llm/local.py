"""The offline default LLM: Qwen2.5-Coder-0.5B-Instruct, run by llama.cpp in this process from
the Q4_K_M GGUF as shipped (``describer.llm.llamacpp``). The GGUF is assembled from its PyPI
chunk packages once (``describer.maps.loading``); nothing is dequantised for describing."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from describer.maps import loading

LOCAL_MODEL = "qwen2.5-coder-0.5b-instruct"
WEAK_MODEL_NOTE = (
    "descriptions come from a local 0.5B model (Qwen2.5-Coder-0.5B-Instruct) that phrases the "
    "relations the analyzer measured; for descriptions that judge the mappings themselves point at a "
    "strong LLM, e.g. --base-url https://api.openai.com/v1 --llm-model gpt-4o with OPENAI_API_KEY set"
)
MODE_ENV = "HEADMAPS_LOCAL_DECODING"
"""``guided`` (default) or ``grammar``: how the local model is kept to the answer's schema."""


def local_model_file() -> Path:
    """The local model's GGUF file, assembled and checked on first use."""
    return loading.materialise_alias(loading.ALIASES[LOCAL_MODEL])


def local_mode() -> str:
    return os.environ.get(MODE_ENV, "guided").strip() or "guided"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
