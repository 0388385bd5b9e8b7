"""Answers already paid for, in a SQLite file beside the converted models."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from describer.llm.base import Completion, GenerationParams, Messages


class ResponseCache:
    """Answers already paid for, keyed by (messages, LLM model, parameters), in a SQLite file.

    A re-run, or a run against another database, sends nothing it has sent before."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS response (key TEXT PRIMARY KEY, text TEXT NOT NULL,"
            " tokens_in INTEGER, tokens_out INTEGER, latency_s REAL, created_at REAL)"
        )

    @staticmethod
    def key(messages: Messages, model: str, params: GenerationParams) -> str:
        blob = json.dumps({"m": messages, "model": model, "p": params.model_dump()}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Completion | None:
        row = self._db.execute(
            "SELECT text, tokens_in, tokens_out, latency_s FROM response WHERE key = ?", (key,)
        ).fetchone()
        return Completion(row[0], row[1] or 0, row[2] or 0, row[3] or 0.0) if row else None

    def put(self, key: str, completion: Completion) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO response VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                completion.text,
                completion.tokens_in,
                completion.tokens_out,
                completion.latency_s,
                time.time(),
            ),
        )

    def close(self) -> None:
        self._db.close()
