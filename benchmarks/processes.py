"""One command as a fresh process, timed, with its peak resident memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time

WRAPPER = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE); "
    "sys.stderr.buffer.write(r.stdout); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)
"""Runs the command as its child and prints that child's peak RSS (kB): the measurement then
counts the command alone, not the benchmark that started it. The command's stdout comes back on
stderr, after its own."""


def measured(args: list[str], what: str, cwd: str | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GiB, stdout) of ``args``, run in ``cwd`` (default: here); exits
    with ``what`` and the end of its stderr if it fails."""
    env = {**os.environ, "HEADMAPS_PROGRESS": "0"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, env=env, cwd=cwd
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-2000:]}")
    return wall, int(done.stdout.strip().splitlines()[-1]) / 2**20, done.stderr
