"""GGUF files read a tensor at a time: the same values and names transformers loads, and types
that cannot be dequantised refused when the file is opened."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from describer.errors import HeadmapsError
from describer.maps.aliases import ALIASES
from describer.maps.tensors import GGUFFile
from tests._real import REAL_MODELS, real_model


@pytest.mark.parametrize("alias", REAL_MODELS)
def test_tensors_equal_what_transformers_loads(alias: str) -> None:
    loaded = real_model(alias)  # converted once (and cached) from the same GGUF
    state = loaded.model.state_dict()
    with GGUFFile(ALIASES[alias].gguf_path()) as source:
        names = set(source.names())
        assert names <= set(state) and len(names) > 100
        tied = set(state) - names
        assert tied <= {"lm_head.weight"}
        picks = [n for n in sorted(names) if n.endswith(("v_proj.weight", "o_proj.weight", "q_proj.weight"))][
            :3
        ]
        picks += [n for n in sorted(names) if "norm" in n][:3] + ["model.embed_tokens.weight"]
        for name in picks:
            assert source.shape(name) == tuple(state[name].shape), name
            assert torch.equal(source.get(name), state[name]), name
        embed = state["model.embed_tokens.weight"]
        assert torch.equal(source.rows("model.embed_tokens.weight", 100, 140), embed[100:140])
        ids = torch.tensor([7, 3, 7, embed.shape[0] - 1])
        assert torch.equal(source.take("model.embed_tokens.weight", ids), embed[ids])
        assert source.stored_dtype("model.embed_tokens.weight") not in ("F32", "BF16")


def test_unsupported_quantisation_is_refused_at_open(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    kind = gguf.GGMLQuantizationType.Q8_1
    block, size = gguf.GGML_QUANT_SIZES[kind]
    writer.add_tensor("output.weight", np.zeros((4, 32 // block * size), dtype=np.uint8), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(HeadmapsError, match=r"tensor 'output\.weight' is quantised as Q8_1"):
        GGUFFile(path)
