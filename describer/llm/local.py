"""The offline default LLM: Qwen2.5-Coder-0.5B-Instruct behind ``transformers serve`` on loopback.

headmaps starts the server itself on a free port, pointed at the dequantised local copy of the
model (``describer.maps.loading`` builds it from the PyPI chunk packages once), waits until it
answers, and stops it when the run ends. Everything else talks to it through the same OpenAI
client as to any other endpoint. (``transformers serve`` cannot load the GGUF by name in 5.23:
its config has no ``architectures``; the dequantised directory loads fine.)
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from describer.errors import HeadmapsError
from describer.maps import loading

LOCAL_MODEL = "qwen2.5-coder-0.5b-instruct"
WEAK_MODEL_NOTE = (
    "descriptions come from a local 0.5B model (Qwen2.5-Coder-0.5B-Instruct) and are weak; "
    "for useful ones point at a strong LLM, e.g. "
    "--base-url https://api.openai.com/v1 --llm-model gpt-4o with OPENAI_API_KEY set"
)


def local_model_dir() -> Path:
    """The dequantised transformers directory of the local model, built on first use."""
    alias = loading.ALIASES[LOCAL_MODEL]
    if not alias.converted():
        loading._convert_gguf(loading.materialise_alias(alias), alias.sha256)
    path = loading.converted_dir(alias.sha256)
    allow_sampling(path)
    return path


def allow_sampling(model_dir: Path) -> None:
    """Let requests with a temperature above 0 sample, as the OpenAI API means them to.

    ``transformers serve`` turns sampling off for temperature 0 but never on: it follows the
    model's ``generation_config.json``, and the one converted from the GGUF leaves ``do_sample``
    unset (greedy). So a retry asked at temperature 0.7 would repeat the greedy answer word for
    word. Idempotent; the file is replaced atomically."""
    path = model_dir / "generation_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    if config.get("do_sample") is True:
        return
    config["do_sample"] = True
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover  (runs in the child before exec)
    # Linux: if headmaps is killed (even with kill -9) the server is killed instead of
    # living on as an orphan holding the port and 2 GB of memory.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class LocalServer:
    """A running ``transformers serve`` process."""

    process: subprocess.Popen[bytes]
    port: int
    model_path: str
    """What requests must name as their model (the server is pinned to it)."""
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


@contextlib.contextmanager
def serve_local(model_dir: Path | None = None, startup_timeout_s: float = 300.0) -> Iterator[LocalServer]:
    """Start ``transformers serve`` on a free loopback port, yield it when ready, stop it after."""
    model_dir = model_dir or local_model_dir()
    port = free_port()
    logs = loading.cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / "transformers-serve.log"
    empty_hub = tempfile.mkdtemp(prefix="headmaps-hub-")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        # /v1/models scans the hub cache and fails with 500 when it does not exist.
        "HF_HUB_CACHE": empty_hub,
        "TRANSFORMERS_VERBOSITY": "error",
    }
    command = [
        sys.executable,
        "-c",
        "from transformers.cli.transformers import main; main()",
        "serve",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--log-level",
        "error",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
        )
    server = LocalServer(process, port, str(model_dir), log_path)
    try:
        _wait_ready(server, startup_timeout_s)
        yield server
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            os.rmdir(empty_hub)


def _wait_ready(server: LocalServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{server.port}/health"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise HeadmapsError(
                f"the local LLM server exited with code {server.process.returncode} "
                f"({_log_tail(server.log_path)}); full log: {server.log_path}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise HeadmapsError(f"the local LLM server did not start within {timeout_s:.0f}s; log: {server.log_path}")
