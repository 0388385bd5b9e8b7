"""Concurrent raters against a running web app, for the load test and ``bench_ratings_load``.

Each rater is one thread with its own HTTP connection and its own Bearer token, posting its
ratings one after another (as a person in the review queue does), all raters at once. Rater
``n``'s rating ``i`` rates description ``ids[(n + i) % len(ids)]`` with a comment naming both,
so the store's rows can be checked one by one afterwards: every rating exactly once, the
last one of each rater and description current, the earlier ones kept as history."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

LABELS = ("plausible", "partially_plausible", "not_plausible", "cannot_tell")


@contextmanager
def serving(url: str) -> Iterator[str]:
    """The web app over the store at ``url`` under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    from evaluation.web import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(url), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def planned(rater: int, i: int, ids: list[int]) -> dict:
    return {
        "description_id": ids[(rater + i) % len(ids)],
        "label": LABELS[(rater * 7 + i) % len(LABELS)],
        "comment": f"r{rater}#{i}",
    }


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    """Seconds per accepted rating."""
    statuses: dict[str, list[int]] = field(default_factory=dict)
    """Rater name -> HTTP status of each post, in order."""

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_load(
    base: str,
    tokens: dict[str, str],
    ids: list[int],
    per_rater: int,
    *,
    on_post: Callable[[str, int], None] | None = None,
) -> LoadResult:
    """Every rater in ``tokens`` (name -> token, in rater-number order) posts ``per_rater``
    ratings at once; ``on_post(name, i)`` runs after each of a rater's posts (a revocation)."""
    lock = threading.Lock()
    result = LoadResult(seconds=0.0, statuses={name: [] for name in tokens})

    def rater(n: int, name: str, token: str) -> None:
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            for i in range(per_rater):
                start = time.perf_counter()
                status = client.post("/api/ratings", json=planned(n, i, ids)).status_code
                took = time.perf_counter() - start
                with lock:
                    result.statuses[name].append(status)
                    if status == 201:
                        result.latencies.append(took)
                if on_post is not None:
                    on_post(name, i)

    start = time.perf_counter()
    with ThreadPoolExecutor(len(tokens)) as pool:
        futures = [pool.submit(rater, n, name, token) for n, (name, token) in enumerate(tokens.items())]
        for f in futures:
            f.result()
    result.seconds = time.perf_counter() - start
    return result


def expected_rows(names: list[str], ids: list[int], counts: dict[str, int]) -> tuple[list[tuple], set[tuple]]:
    """(every stored row as (rater, description, label, comment), sorted; the current ones)
    when rater ``names[n]`` had its first ``counts[name]`` posts accepted."""
    rows, last = [], {}
    for n, name in enumerate(names):
        for i in range(counts[name]):
            p = planned(n, i, ids)
            row = (name, p["description_id"], p["label"], p["comment"])
            rows.append(row)
            last[(name, p["description_id"])] = row
    return sorted(rows), set(last.values())
