"""Per-architecture views of a model's weights, registered by ``config.model_type``."""

from describer.maps.adapters import gemma, gpt2, llama, neox, phi3  # noqa: F401  (registration)
from describer.maps.adapters.base import (
    Adapter,
    LayerWeights,
    Norm,
    UnsupportedArchitecture,
    adapter_for,
    check_family,
    supported_families,
)

__all__ = [
    "Adapter",
    "LayerWeights",
    "Norm",
    "UnsupportedArchitecture",
    "adapter_for",
    "check_family",
    "supported_families",
]
