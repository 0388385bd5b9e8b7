"""Crash and concurrency safety of the SQLite store, in real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import func, select

from store import open_store
from store import tables as S
from tests._storedb import analysis, model_info

ROOT = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent(
    """
    import sys
    from store import open_store
    from store.records import RatingIn
    from tests._storedb import analysis, description, model_info
    url, name, layers, heads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    info = model_info(name, layers, heads)
    data = analysis(info, n_salient=10, n_map=5)
    store = open_store(url)
    print("writing", flush=True)
    store.save_analysis(info, data, settings_key="k")
    for i in range(int(sys.argv[5]) if len(sys.argv) > 5 else 0):
        did = store.add_description(description(name, i % layers, i % heads))
        store.add_rating(RatingIn(description_id=did, rater=name, label="plausible"))
    print("done", flush=True)
    """
)


def _writer(url: str, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, url, *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _count(store, table) -> int:  # noqa: ANN001
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(table))


def test_kill_9_mid_write_leaves_a_consistent_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    wal = tmp_path / "store.db-wal"
    open_store(url).close()
    proc = _writer(url, "big", 64, 32)
    assert proc.stdout.readline().strip() == "writing"
    deadline = time.monotonic() + 60
    # Kill once the transaction has put a few MB into the write-ahead log.
    while (not wal.exists() or wal.stat().st_size < 2_000_000) and time.monotonic() < deadline:
        assert proc.poll() is None, "the writer finished before it could be killed"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    with open_store(url) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        assert not store.has_analysis("big", "k")
        assert _count(store, S.SalientToken) == 0 and _count(store, S.MappedToken) == 0
        # The next run completes it.
        info = model_info("big", 64, 32)
        store.save_analysis(info, analysis(info, n_salient=10, n_map=5), settings_key="k")
        assert store.has_analysis("big", "k")
        assert _count(store, S.SalientToken) == 64 * 32 * 10 and _count(store, S.MappedToken) == 64 * 32 * 50


def test_two_processes_write_the_same_file_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    # Neither process finds a schema: both race to create it, too.
    procs = [_writer(url, "alpha", 24, 16, 40), _writer(url, "beta", 24, 16, 40)]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert stdout.split() == ["writing", "done"]
    with open_store(url) as store:
        assert {m.name for m in store.list_models()} == {"alpha", "beta"}
        assert store.has_analysis("alpha", "k") and store.has_analysis("beta", "k")
        assert _count(store, S.SalientToken) == 2 * 24 * 16 * 10
        assert _count(store, S.Description) == 80 and _count(store, S.Rating) == 80
