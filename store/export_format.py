"""The export file format, shared by ``store.export`` (which writes it) and ``store.importer``
(which reads it): the whole store (or one model) as one JSON file or a zip of CSVs.

Both formats hold the same tables (``TABLES``), with rows keyed by natural keys (model name,
layer, head) and file-local references (``ref``: 1, 2, … in file order) instead of database
ids, so importing into an empty database and exporting again gives an identical file.

- JSON: ``{"format": "headmaps-export", "version": 1, "tables": {TABLE: [ROW, …]}}``, keys
  sorted, two-space indent.
- CSV: a zip holding ``TABLE.csv`` per table (header row, then rows; lists and dicts as JSON
  text, bytes as base64, booleans as ``true``/``false``) and
  ``manifest.json`` with the format and version. Null is written ``\\N`` (PostgreSQL's COPY
  convention), so an empty cell is an empty string.
"""

from __future__ import annotations

FORMAT, VERSION = "headmaps-export", 1
NULL = "\\N"

# table -> [(column, type)]; type one of int, float, str, bool, json, bytes, time (each may be null)
TABLES: dict[str, list[tuple[str, str]]] = {
    "model": [
        ("name", "str"), ("source", "str"), ("kind", "str"), ("content_hash", "str"), ("family", "str"),
        ("n_layers", "int"), ("n_heads", "int"), ("n_kv_heads", "int"), ("d_model", "int"),
        ("vocab_size", "int"), ("created_at", "time"),
    ],
    "operation": [
        ("ref", "int"), ("name", "str"), ("category", "str"), ("pairs", "json"), ("origin", "str"),
        ("source_file", "str"), ("content_hash", "str"),
    ],
    "analysis": [
        ("ref", "int"), ("model", "str"), ("settings_key", "str"), ("settings", "json"), ("created_at", "time"),
    ],
    "salient_token": [
        ("analysis", "int"), ("layer", "int"), ("head", "int"), ("rank", "int"), ("token", "str"),
        ("token_id", "int"), ("amplification", "float"),
    ],
    "mapped_token": [
        ("analysis", "int"), ("layer", "int"), ("head", "int"), ("salient_rank", "int"), ("rank", "int"),
        ("token", "str"), ("token_id", "int"), ("logit", "float"),
    ],
    "suppressed_token": [
        ("analysis", "int"), ("layer", "int"), ("head", "int"), ("salient_rank", "int"), ("rank", "int"),
        ("token", "str"), ("token_id", "int"), ("logit", "float"),
    ],
    "operation_score": [
        ("analysis", "int"), ("operation", "int"), ("k", "int"), ("layer", "int"), ("head", "int"),
        ("default_k", "bool"), ("n_pairs", "int"), ("relation", "float"), ("suppression", "float"),
    ],
    "operation_pair": [
        ("analysis", "int"), ("operation", "int"), ("idx", "int"), ("source", "str"), ("source_id", "int"),
        ("target", "str"), ("target_id", "int"),
    ],
    "pair_outcome": [
        ("analysis", "int"), ("operation", "int"), ("layer", "int"), ("head", "int"), ("k", "int"),
        ("default_k", "bool"), ("ranks", "bytes"), ("suppressed_ranks", "bytes"),
    ],
    "head_relation": [
        ("analysis", "int"), ("layer", "int"), ("head", "int"), ("relation", "str"), ("rank", "int"),
        ("label", "str"), ("rows", "int"), ("n_rows", "int"), ("fraction", "float"), ("examples", "json"),
    ],
    "pattern_analysis": [
        ("ref", "int"), ("model", "str"), ("settings_key", "str"), ("settings", "json"), ("created_at", "time"),
    ],
    "head_pattern": [
        ("pattern_analysis", "int"), ("layer", "int"), ("head", "int"), ("pattern", "str"), ("score", "float"),
    ],
    "run": [
        ("ref", "int"), ("kind", "str"), ("model", "str"), ("settings", "json"), ("started_at", "time"),
        ("finished_at", "time"), ("counts", "json"), ("status", "str"), ("error", "str"),
    ],
    "description": [
        ("ref", "int"), ("model", "str"), ("layer", "int"), ("head", "int"), ("analysis", "int"), ("run", "int"),
        ("prompt_name", "str"), ("prompt_sha", "str"), ("rendered_prompt", "str"), ("llm_model", "str"),
        ("llm_host", "str"), ("params", "json"), ("raw_response", "str"), ("reasoning", "str"),
        ("inputs", "str"), ("pattern", "str"), ("unclear", "bool"), ("category", "str"), ("tags", "json"),
        ("status", "str"), ("tokens_in", "int"), ("tokens_out", "int"), ("latency_s", "float"),
        ("created_at", "time"),
    ],
    "description_embedding": [
        ("description", "int"), ("encoder", "str"), ("dim", "int"), ("vector", "bytes"),
    ],
    "rating": [
        ("description", "int"), ("rater", "str"), ("label", "str"), ("comment", "str"),
        ("created_at", "time"), ("is_current", "bool"),
    ],
    "description_score": [
        ("description", "int"), ("scorer", "str"), ("llm_model", "str"), ("score", "float"),
        ("details", "json"), ("created_at", "time"),
    ],
}  # fmt: skip

OPTIONAL_TABLES = frozenset(
    {
        "description_score",
        "head_relation",
        "pattern_analysis",
        "head_pattern",
        "suppressed_token",
        "operation_pair",
        "pair_outcome",
    }
)
"""Tables added after version 1 of the format: files written before them lack them and import
as if they were empty (and an older headmaps ignores them)."""
