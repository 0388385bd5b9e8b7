"""The real models from the model packages, loaded once per test process and shared.

Loading converts the GGUF the first time (about a minute each) and caches the conversion
under HEADMAPS_CACHE_DIR, so later runs take seconds.
"""

from __future__ import annotations

import importlib.util
from functools import cache

import pytest

from describer.maps.loading import ALIASES, LoadedModel, load_model

REAL_MODELS = ("gemma-3-270m", "qwen2.5-coder-0.5b-instruct")


@cache
def real_model(alias: str) -> LoadedModel:
    if not all(importlib.util.find_spec(p) for p in ALIASES[alias].packages):
        pytest.fail(f"model packages for {alias} are not installed: pip install -e '.[models]'")
    return load_model(alias)
