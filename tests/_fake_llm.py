"""Fake OpenAI-compatible LLMs for tests and the benchmark.

``mock_client(handler)``: an ``httpx2`` client whose transport calls ``handler`` in-process
(the HTTP layer is faked, the ``openai`` SDK runs for real). ``FakeOpenAIServer``: a real HTTP
server on loopback (a thread) that answers chat completions after a fixed delay, for
subprocess tests and the benchmark.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from describer.llm.fake import default_answer

answer_for = default_answer
"""A valid description, chosen deterministically by the prompt (the fake backend's answer)."""


def completion_body(
    content: str,
    model: str = "fake-model",
    tokens_in: int = 100,
    tokens_out: int = 40,
    finish_reason: str = "stop",
) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": content}}
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
    }


def mock_client(handler: Callable[..., Any]) -> Any:
    """An ``httpx2.AsyncClient`` (what the ``openai`` SDK uses) whose requests go to ``handler``."""
    import httpx2

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 refuses connections under a burst of concurrent clients
    daemon_threads = True


class FakeOpenAIServer:
    """``/v1/models`` and ``/v1/chat/completions`` on 127.0.0.1, each completion after ``delay_s``.

    ``calls`` counts completions; ``prompts`` lists the last user message of each; ``headers``
    keeps the request headers (to check what a client sends)."""

    def __init__(
        self, delay_s: float = 0.0, model: str = "fake-model", require_key: str | None = None
    ) -> None:
        self.delay_s = delay_s
        self.model = model
        self.require_key = require_key
        self.calls = 0
        self.prompts: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if server.require_key and self.headers.get("authorization") != f"Bearer {server.require_key}":
                    self._send(401, {"error": {"message": "invalid api key", "type": "auth"}})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorised():
                    return
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorised():
                    return
                if body.get("model") != server.model:
                    self._send(404, {"error": {"message": f"model {body.get('model')} not found"}})
                    return
                prompt = body["messages"][-1]["content"]
                with server._lock:
                    server.calls += 1
                    server.prompts.append(prompt)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay_s)
                finally:
                    with server._lock:
                        server.in_flight -= 1
                self._send(200, completion_body(answer_for(prompt), server.model))

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
