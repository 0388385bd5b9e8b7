"""What the command-line tests share: a tiny random Llama saved as a local model directory (and
two models of unsupported families), an isolated cache, and helpers that run the ``headmaps``
app in-process with typer's CliRunner and check its output. Test modules import the fixtures
by name."""

from __future__ import annotations

import json
import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

from describer import cli
from describer.maps.operations import builtin_operations
from tests._tiny import build_bpe_tokenizer, builtin_words, save_tiny_llama

app = cli.app
runner = CliRunner()

N_LAYERS, N_HEADS = 2, 4
COPYING_PAIRS = len(builtin_operations()["general_copying"].pairs)
WORDS = builtin_words("general_copying", "name_copying")
"""The tiny tokenizer's words: every general_copying pair is usable, no year is."""


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return build_bpe_tokenizer(WORDS)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: object) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", tokenizer)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: object) -> Path:
    """A family transformers can load as a causal LM but headmaps has no adapter for."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    path = tmp_path_factory.mktemp("models") / "tiny-bert"
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: object) -> Path:
    """A family ``AutoModelForCausalLM`` refuses to load at all."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2)
    path = tmp_path_factory.mktemp("models") / "tiny-t5"
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HEADMAPS_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HEADMAPS_PROGRESS", raising=False)
    return cache


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


# --- helpers -------------------------------------------------------------------------------------


def invoke(*args: object):  # noqa: ANN201  (click.testing.Result)
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        pytest.fail("uncaught exception:\n" + "".join(traceback.format_exception(*result.exc_info)))
    return result


def assert_ok(result) -> None:  # noqa: ANN001
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def assert_user_error(result, *fragments: str, preamble: bool = False) -> str:  # noqa: ANN001
    """Exit code 2, nothing on stdout, one ``error:`` line on stderr holding ``fragments``.

    ``preamble`` allows warnings that transformers itself prints before the error."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.stderr
    if not preamble:
        assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def score_json(*args: object) -> dict:
    result = invoke("score", *args, "--json", "--device", "cpu")
    assert_ok(result)
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)


def write_pairs_json(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text(json.dumps([list(p) for p in pairs]), encoding="utf-8")
    return path


def shifted_pairs(n: int) -> list[tuple[str, str]]:
    """``n`` pairs of tiny-vocabulary words, each word mapped to the next."""
    return [(WORDS[i], WORDS[i + 1]) for i in range(n)]


def check_grid(grid: list[list[float]], n_pairs: int) -> None:
    assert len(grid) == N_LAYERS and all(len(row) == N_HEADS for row in grid)
    for value in (v for row in grid for v in row):
        assert 0.0 <= value <= 1.0
        assert abs(value * n_pairs - round(value * n_pairs)) < 1e-3  # a fraction of the pairs
