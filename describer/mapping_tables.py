"""Mapping tables from a file: heads that did not come from a model in the store.

``headmaps describe --mappings FILE`` describes the salient mapping tables in ``FILE``, a JSON
object of this shape (tokens are kept exactly as written, so a leading space is part of one)::

    {"heads": [{"name": "h3",
                "salient": [{"token": " France", "mappings": [" Paris", " Lyon", "Paris"]},
                            ...]},
               ...]}

Each row is one input token and the tokens the head maps it to, strongest first. A bad file
fails with one ``HeadmapsError`` line naming the file, the head (by name, or by its index in
``heads`` when it has none) and the problem. The limits below keep a bad file from taking all
the memory; other keys are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from describer.errors import HeadmapsError

MAX_HEADS = 10_000
MAX_ROWS = 200
"""Salient rows of one head."""
MAX_MAPPINGS = 100
"""Output tokens of one row."""
MAX_FILE_BYTES = 256 * 1024 * 1024
"""Checked before the file is read: a file of realistic tables is a few MiB."""


@dataclass(frozen=True)
class MappingTable:
    """One head's salient mapping table."""

    name: str
    rows: tuple[tuple[str, tuple[str, ...]], ...]
    """(input token, the tokens it is mapped to, strongest first), most salient row first."""


def load_mapping_tables(path: str | Path) -> list[MappingTable]:
    """The heads of a mappings file, in the file's order; ``HeadmapsError`` for a bad file."""
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise HeadmapsError(
            f'{path}: expected a JSON object with a "heads" list at the top level, got {_kind(raw)}'
        )
    if "heads" not in raw:
        raise HeadmapsError(f'{path}: no "heads" list at the top level')
    heads = raw["heads"]
    if not isinstance(heads, list):
        raise HeadmapsError(f'{path}: "heads" must be a list, got {_kind(heads)}')
    if not heads:
        raise HeadmapsError(f'{path}: "heads" is empty; there is no head to describe')
    if len(heads) > MAX_HEADS:
        raise HeadmapsError(f"{path}: {len(heads)} heads, more than the limit of {MAX_HEADS}")
    tables: list[MappingTable] = []
    seen: dict[str, int] = {}
    for index, head in enumerate(heads):
        table = _table(path, index, head)
        if table.name in seen:
            raise HeadmapsError(
                f"{path}: head {_quote(table.name)} appears twice (heads[{seen[table.name]}] and "
                f"heads[{index}]); head names must be unique"
            )
        seen[table.name] = index
        tables.append(table)
    return tables


def write_mapping_tables(tables: Iterable[MappingTable], path: str | Path) -> None:
    """Write ``tables`` in the format ``load_mapping_tables`` reads (UTF-8, tokens unescaped)."""
    document = {
        "heads": [
            {
                "name": table.name,
                "salient": [{"token": token, "mappings": list(outputs)} for token, outputs in table.rows],
            }
            for table in tables
        ]
    }
    Path(path).write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


# --- reading and checking ------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise HeadmapsError(f"{path}: no such mappings file")
    if not path.is_file():
        raise HeadmapsError(f"{path}: not a file; expected a JSON mappings file")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise HeadmapsError(
                f"{path}: {size} bytes, more than the limit of {MAX_FILE_BYTES} for a mappings file"
            )
        text = path.read_text(encoding="utf-8-sig")  # -sig: an editor's BOM is not JSON
    except (OSError, UnicodeDecodeError) as exc:
        raise HeadmapsError(f"{path}: cannot read mappings file ({_one_line(str(exc))})") from exc
    if not text.strip():
        raise HeadmapsError(f"{path}: mappings file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HeadmapsError(f"{path}: not valid JSON at line {exc.lineno}:{exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise HeadmapsError(f"{path}: JSON nested too deeply to be a mappings file") from exc


def _table(path: Path, index: int, head: Any) -> MappingTable:
    where = f"heads[{index}]"
    if not isinstance(head, dict):
        raise HeadmapsError(f"{path}: {where} is not an object with a name and salient rows")
    if "name" not in head:
        raise HeadmapsError(f'{path}: {where} has no "name"')
    name = head["name"]
    if not isinstance(name, str):
        raise HeadmapsError(f'{path}: {where} has a "name" that is not a string ({_kind(name)})')
    if not name.strip():
        raise HeadmapsError(f'{path}: {where} has an empty "name"')
    label = f"head {_quote(name)}"
    salient = head.get("salient")
    if salient is None or salient == []:
        raise HeadmapsError(f"{path}: {label} has no salient rows")
    if not isinstance(salient, list):
        raise HeadmapsError(f'{path}: {label}: "salient" must be a list of rows, got {_kind(salient)}')
    if len(salient) > MAX_ROWS:
        raise HeadmapsError(
            f"{path}: {label} has {len(salient)} salient rows, more than the limit of {MAX_ROWS}"
        )
    return MappingTable(name, tuple(_row(path, label, i, row) for i, row in enumerate(salient)))


def _row(path: Path, label: str, index: int, row: Any) -> tuple[str, tuple[str, ...]]:
    where = f"{path}: {label}: salient[{index}]"
    if not isinstance(row, dict):
        raise HeadmapsError(f'{where} is not an object with a "token" and "mappings"')
    if "token" not in row:
        raise HeadmapsError(f'{where} has no "token"')
    token = row["token"]
    if not isinstance(token, str):
        raise HeadmapsError(f'{where} has a "token" that is not a string ({_kind(token)})')
    where = f"{where} ({_quote(token)})"
    mappings = row.get("mappings")
    if "mappings" not in row or mappings == []:
        raise HeadmapsError(f'{where} has no "mappings"; each row needs at least one output token')
    if not isinstance(mappings, list):
        raise HeadmapsError(f'{where}: "mappings" must be a list of strings, got {_kind(mappings)}')
    if len(mappings) > MAX_MAPPINGS:
        raise HeadmapsError(f"{where} has {len(mappings)} mappings, more than the limit of {MAX_MAPPINGS}")
    bad = next((i for i, m in enumerate(mappings) if not isinstance(m, str)), None)
    if bad is not None:
        raise HeadmapsError(f'{where}: "mappings"[{bad}] is not a string ({_kind(mappings[bad])})')
    return token, tuple(mappings)


def _quote(text: str) -> str:
    """A name or token as a JSON string: quoted, a leading space visible, a newline escaped, and
    cut short when long (the message stays one readable line)."""
    return json.dumps(text if len(text) <= 60 else text[:57] + "...", ensure_ascii=False)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())
