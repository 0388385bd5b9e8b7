"""``headmaps describe`` end to end, as a real process: bad endpoints fail before any analysis,
``kill -9`` loses nothing finished, and the offline default describes with the real local
Qwen2.5-Coder-0.5B-Instruct, run by llama.cpp in process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from describer.llm.local import free_port
from store import open_store
from tests._fake_llm import FakeOpenAIServer
from tests._tiny import build_bpe_tokenizer, builtin_words, save_tiny_llama

SECRET = "sk-test-SECRET-integration-42"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = build_bpe_tokenizer(builtin_words("general_copying", "name_copying"))
    return save_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama", tokenizer)


def headmaps() -> str:
    beside = Path(sys.executable).parent / "headmaps"
    found = str(beside) if beside.exists() else shutil.which("headmaps")
    assert found, "the headmaps console script is not installed"
    return found


def env_for(cache: Path, key: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "HEADMAPS_LLM_API_KEY", "HEADMAPS_LLM_BASE_URL", "HEADMAPS_LLM_MODEL")
    }
    env.update(HEADMAPS_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1")
    if key:
        env["OPENAI_API_KEY"] = key
    return env


def describe(
    *args: object, cache: Path, key: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [headmaps(), "describe", *map(str, args)],
        env=env_for(cache, key),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stored_models(db: Path) -> list[str]:
    if not db.exists():
        return []
    with open_store(str(db)) as store:
        return [m.name for m in store.list_models()]


# --- bad input: one line, exit 2, before any analysis -------------------------------------------------


def assert_refused(proc: subprocess.CompletedProcess, pattern: str, db: Path) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert pattern in lines[0], lines[0]
    assert stored_models(db) == []  # nothing was analysed
    assert proc.stdout == ""


def test_missing_key_for_a_keyed_endpoint(tiny_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    proc = describe(
        tiny_dir,
        "--base-url",
        "https://api.openai.com/v1",
        "--llm-model",
        "gpt-4o",
        "--db",
        db,
        cache=tmp_path,
    )
    assert_refused(proc, "needs an API key: set HEADMAPS_LLM_API_KEY or OPENAI_API_KEY", db)


def test_endpoint_that_answers_401_without_a_key(tiny_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with FakeOpenAIServer(require_key=SECRET) as server:
        proc = describe(
            tiny_dir, "--base-url", server.base_url, "--llm-model", "fake-model", "--db", db, cache=tmp_path
        )
        assert_refused(proc, "needs an API key", db)
        proc = describe(
            tiny_dir,
            "--base-url",
            server.base_url,
            "--llm-model",
            "fake-model",
            "--db",
            db,
            cache=tmp_path,
            key="bad",
        )
        assert_refused(proc, "rejected the API key", db)
    assert "bad" not in proc.stderr


def test_unreachable_base_url(tiny_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    url = f"http://127.0.0.1:{free_port()}/v1"
    proc = describe(tiny_dir, "--base-url", url, "--llm-model", "m", "--db", db, cache=tmp_path)
    assert_refused(proc, f"cannot reach the LLM endpoint {url}", db)


def test_unknown_llm_model(tiny_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    with FakeOpenAIServer() as server:
        proc = describe(
            tiny_dir, "--base-url", server.base_url, "--llm-model", "gpt-9", "--db", db, cache=tmp_path
        )
    assert_refused(proc, "unknown LLM model 'gpt-9'", db)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-url", "http://127.0.0.1:9/v1"], "--base-url needs --llm-model"),
        (["--heads", "1-2"], "is not a head"),
        (["--prompt", "no-such-template"], "unknown prompt"),
    ],
)
def test_bad_options(tiny_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    db = tmp_path / "h.sqlite"
    assert_refused(describe(tiny_dir, *args, "--db", db, cache=tmp_path), message, db)


# --- kill -9 and resume ---------------------------------------------------------------------------------


def count_descriptions(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM description").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_kill_9_loses_nothing_finished_and_the_rerun_does_only_the_rest(
    tiny_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "h.sqlite"
    with FakeOpenAIServer(delay_s=0.4) as server:
        args = [
            tiny_dir,
            "--base-url",
            server.base_url,
            "--llm-model",
            "fake-model",
            "--db",
            db,
            "--concurrency",
            "1",
        ]
        proc = subprocess.Popen(
            [headmaps(), "describe", *map(str, args)],
            env=env_for(tmp_path, SECRET),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while count_descriptions(db) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = count_descriptions(db)
        assert 3 <= finished < 8
        prompts_before = list(server.prompts)
        with sqlite3.connect(db) as conn:
            stored_prompts = {row[0] for row in conn.execute("SELECT rendered_prompt FROM description")}

        rerun = describe(*args, "--json", cache=tmp_path, key=SECRET)
        assert rerun.returncode == 0, rerun.stderr
        summary = json.loads(rerun.stdout)
        # Every answer parsed: a sum with ``failed`` would pass if every answer had failed.
        assert summary["heads"] == 8 and summary["described"] == 8 and summary["failed"] == 0
        new_prompts = server.prompts[len(prompts_before) :]
        assert not stored_prompts & set(new_prompts)  # nothing finished was asked again
        # The request in flight at the kill had been answered into the response cache, or not:
        # either way the re-run sends at most one request per missing head.
        assert len(new_prompts) <= 8 - finished
        assert summary["llm_calls"] == len(new_prompts)

        again = describe(*args, "--json", cache=tmp_path, key=SECRET)
        assert json.loads(again.stdout)["llm_calls"] == 0
    assert count_descriptions(db) == 8
    with open_store(str(db)) as store:
        stored = [
            d for la in range(2) for h in range(4) for d in store.get_head("tiny-llama", la, h).descriptions
        ]
    assert len(stored) == 8
    for d in stored:  # the fake server's answers, parsed into every field
        assert d.status in ("ok", "unclear") and d.inputs == "Common English words." and d.pattern
        assert d.category and d.tags == ["copying"] and d.raw_response and d.rendered_prompt
        assert (d.status == "unclear") == d.unclear == (d.category == "unclear")
    for path in tmp_path.rglob("*.sqlite*"):
        assert SECRET.encode() not in path.read_bytes(), path


# --- the real offline default: llama.cpp in process -------------------------------------------------


def real_cache_with_local_model(tmp_path: Path) -> Path:
    """A fresh cache directory (so the response cache is empty) that links to the local model's
    GGUF in the real cache (assembled there once from its packages if it is not yet)."""
    from describer.llm.local import local_model_file

    real = local_model_file()
    cache = tmp_path / "cache"
    (cache / "gguf").mkdir(parents=True)
    (cache / "gguf" / real.name).symlink_to(real)
    return cache


def test_offline_default_describes_with_the_real_local_model(tiny_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the offline runtime: bash .ci/llama-cpp.sh installs it")
    cache = real_cache_with_local_model(tmp_path)
    db = tmp_path / "h.sqlite"
    start = time.monotonic()
    proc = describe(tiny_dir, "--heads", "0.0,1.1", "--db", db, "--json", cache=cache, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["model"] == "tiny-llama" and summary["heads"] == 8
    assert summary["llm_calls"] >= 2 and summary["tokens_in"] > 0 and summary["tokens_out"] > 0
    # Guided decoding cannot leave the schema: nothing fails.
    assert summary["described"] == 2 and summary["failed"] == 0
    assert "0.5B model" in proc.stderr and "--base-url https://api.openai.com/v1" in proc.stderr
    with open_store(str(db)) as store:
        for layer, head in ((0, 0), (1, 1)):
            (d,) = store.get_head("tiny-llama", layer, head).descriptions
            assert d.llm_model == "qwen2.5-coder-0.5b-instruct" and d.llm_host == "local:llama.cpp/guided"
            assert d.prompt_name == "facts" and "Verdict:" in d.rendered_prompt
            assert d.status in ("ok", "unclear") and d.pattern and d.inputs and d.category
            assert d.raw_response and d.pattern.strip() and d.inputs.strip()
            assert (d.status == "unclear") == d.unclear == (d.category == "unclear")
            assert d.params["temperature"] == 0.0
            # Provenance: every request the description took, with its parameters.
            assert d.params["requests"] == [
                {
                    "request": "first",
                    **{k: d.params[k] for k in ("temperature", "max_tokens", "structured")},
                    "cached": False,
                }
            ]
            assert d.latency_s and d.latency_s > 0
    # Again: every answer comes from the response cache, nothing is asked.
    db2 = tmp_path / "h2.sqlite"
    again = describe(tiny_dir, "--heads", "0.0,1.1", "--db", db2, "--json", cache=cache, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["llm_calls"] == 0
    print(f"offline describe of 2 heads took {time.monotonic() - start:.0f}s")


def test_offline_default_without_its_runtime_says_how_to_install_it(tiny_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    blocker = tmp_path / "no-llama"
    (blocker / "llama_cpp").mkdir(parents=True)
    (blocker / "llama_cpp" / "__init__.py").write_text("raise ImportError('not here')\n")
    env = {**env_for(cache), "PYTHONPATH": str(blocker)}
    db = tmp_path / "h.sqlite"
    proc = subprocess.run(
        [headmaps(), "describe", str(tiny_dir), "--db", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_refused(proc, "llama-cpp-python is not installed; install it with `bash .ci/llama-cpp.sh`", db)
