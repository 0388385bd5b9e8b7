"""Mapping tables from a file (``describe --mappings FILE``): a valid file read exactly, and one
clear error line, naming the file and the head, for each bad one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from describer import mapping_tables
from describer.errors import HeadmapsError
from describer.mapping_tables import MappingTable, load_mapping_tables, write_mapping_tables


def row(token: str = " France", mappings: Any = (" Paris", " Lyon")) -> dict[str, Any]:
    return {"token": token, "mappings": list(mappings) if isinstance(mappings, tuple) else mappings}


def head(name: Any = "h3", salient: Any = None) -> dict[str, Any]:
    return {"name": name, "salient": [row()] if salient is None else salient}


def write(tmp_path: Path, document: Any, name: str = "mappings.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def error(path: Path) -> str:
    with pytest.raises(HeadmapsError) as caught:
        load_mapping_tables(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


# --- a valid file ------------------------------------------------------------------------------


def test_a_valid_file_round_trips(tmp_path: Path) -> None:
    document = {
        "model": "ignored",
        "heads": [
            {"name": "L0H1", "salient": [row(" France", [" Paris", "Paris"]), row(" Japan", [" Tokyo"])]},
            {"name": "copy", "salient": [row("the", ["the", " the", "The"])], "extra": 1},
        ],
    }
    tables = load_mapping_tables(write(tmp_path, document))
    assert tables == [
        MappingTable("L0H1", ((" France", (" Paris", "Paris")), (" Japan", (" Tokyo",)))),
        MappingTable("copy", (("the", ("the", " the", "The")),)),
    ]
    again = tmp_path / "again.json"
    write_mapping_tables(tables, again)
    assert load_mapping_tables(str(again)) == tables


def test_tokens_are_kept_exactly(tmp_path: Path) -> None:
    tokens = [" Paris", "  two spaces", "Paris", "\n", " ", "x ", "\t tab"]
    path = write(tmp_path, {"heads": [head(salient=[row(t, [t, " " + t]) for t in tokens])]})
    (table,) = load_mapping_tables(path)
    assert [t for t, _ in table.rows] == tokens
    assert [m for _, m in table.rows] == [(t, " " + t) for t in tokens]


def test_unicode_tokens(tmp_path: Path) -> None:
    rows = [row(" café", [" 咖啡", " кафе"]), row("ção", ["的", "😀", "ß"]), row(" tête", [" head"])]
    path = write(tmp_path, {"heads": [head("tête-1", rows)]})
    (table,) = load_mapping_tables(path)
    assert table.name == "tête-1"
    assert table.rows[0] == (" café", (" 咖啡", " кафе"))
    assert table.rows[1] == ("ção", ("的", "😀", "ß"))
    escaped = tmp_path / "escaped.json"  # \u escapes, as json.dumps writes by default
    escaped.write_text(json.dumps({"heads": [head("tête-1", rows)]}), encoding="utf-8")
    assert load_mapping_tables(escaped) == [table]
    out = tmp_path / "out.json"
    write_mapping_tables([table], out)
    assert " 咖啡" in out.read_text(encoding="utf-8")  # written unescaped, readable
    assert load_mapping_tables(out) == [table]


def test_a_byte_order_mark_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(json.dumps({"heads": [head()]}).encode("utf-8-sig"))
    assert load_mapping_tables(path)[0].name == "h3"


def test_the_limits_themselves_are_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping_tables, "MAX_HEADS", 3)
    monkeypatch.setattr(mapping_tables, "MAX_ROWS", 4)
    full = [row(f" w{i}", [f" m{j}" for j in range(mapping_tables.MAX_MAPPINGS)]) for i in range(4)]
    path = write(tmp_path, {"heads": [head(f"h{i}", full) for i in range(3)]})
    tables = load_mapping_tables(path)
    assert len(tables) == 3 and all(len(t.rows) == 4 for t in tables)
    assert len(tables[0].rows[0][1]) == 100


# --- the file and its top level ----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert error(tmp_path / "nope.json") == "no such mappings file"


def test_a_directory(tmp_path: Path) -> None:
    assert error(tmp_path) == "not a file; expected a JSON mappings file"


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"heads": [{"name": "caf\xe9"}]}')
    assert error(path).startswith("cannot read mappings file (")


def test_too_big_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping_tables, "MAX_FILE_BYTES", 10)
    path = write(tmp_path, {"heads": [head()]})
    size = path.stat().st_size
    assert error(path) == f"{size} bytes, more than the limit of 10 for a mappings file"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "mappings.json"
    path.write_text("  \n", encoding="utf-8")
    assert error(path) == "mappings file is empty"


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "mappings.json"
    path.write_text('{"heads": [\n  {"name": "h1",, }\n]}', encoding="utf-8")
    assert error(path) == "not valid JSON at line 2:17: Expecting property name enclosed in double quotes"


def test_deeply_nested_json(tmp_path: Path) -> None:
    path = tmp_path / "mappings.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    assert error(path) == "JSON nested too deeply to be a mappings file"


@pytest.mark.parametrize(
    ("document", "kind"), [([head()], "a list"), ("heads", "a string"), (3, "a number"), (None, "null")]
)
def test_top_level_not_an_object(tmp_path: Path, document: Any, kind: str) -> None:
    expected = f'expected a JSON object with a "heads" list at the top level, got {kind}'
    assert error(write(tmp_path, document)) == expected


def test_no_heads_key(tmp_path: Path) -> None:
    assert error(write(tmp_path, {"head": [head()]})) == 'no "heads" list at the top level'


def test_heads_not_a_list(tmp_path: Path) -> None:
    assert error(write(tmp_path, {"heads": {"h3": head()}})) == '"heads" must be a list, got an object'


def test_empty_heads(tmp_path: Path) -> None:
    assert error(write(tmp_path, {"heads": []})) == '"heads" is empty; there is no head to describe'


def test_too_many_heads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping_tables, "MAX_HEADS", 2)
    path = write(tmp_path, {"heads": [head(f"h{i}") for i in range(3)]})
    assert error(path) == "3 heads, more than the limit of 2"


def test_the_real_limits() -> None:
    assert (mapping_tables.MAX_HEADS, mapping_tables.MAX_ROWS, mapping_tables.MAX_MAPPINGS) == (
        10_000,
        200,
        100,
    )


# --- heads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ("h3", "heads[1] is not an object with a name and salient rows"),
        ([row()], "heads[1] is not an object with a name and salient rows"),
        ({"salient": [row()]}, 'heads[1] has no "name"'),
        (head(None), 'heads[1] has a "name" that is not a string (null)'),
        (head(7), 'heads[1] has a "name" that is not a string (a number)'),
        (head(["h"]), 'heads[1] has a "name" that is not a string (a list)'),
        (head(""), 'heads[1] has an empty "name"'),
        (head("  "), 'heads[1] has an empty "name"'),
    ],
)
def test_bad_head(tmp_path: Path, bad: Any, expected: str) -> None:
    assert error(write(tmp_path, {"heads": [head("h0"), bad]})) == expected


def test_duplicate_names(tmp_path: Path) -> None:
    path = write(tmp_path, {"heads": [head("h1"), head("h3"), head("h2"), head("h3")]})
    assert error(path) == 'head "h3" appears twice (heads[1] and heads[3]); head names must be unique'


@pytest.mark.parametrize("salient", [[], None, "missing"])
def test_a_head_with_no_rows(tmp_path: Path, salient: Any) -> None:
    bad = {"name": "h3"} if salient == "missing" else {"name": "h3", "salient": salient}
    assert error(write(tmp_path, {"heads": [head("h1"), bad]})) == 'head "h3" has no salient rows'


def test_salient_not_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, {"heads": [head("h3", {" France": [" Paris"]})]})
    assert error(path) == 'head "h3": "salient" must be a list of rows, got an object'


def test_too_many_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping_tables, "MAX_ROWS", 2)
    path = write(tmp_path, {"heads": [head("h3", [row()] * 3)]})
    assert error(path) == 'head "h3" has 3 salient rows, more than the limit of 2'


def test_a_long_or_odd_name_stays_one_short_line(tmp_path: Path) -> None:
    name = "a\nb" + "x" * 200
    message = error(write(tmp_path, {"heads": [head(name, [])]}))
    assert message == 'head "a\\nb' + "x" * 54 + '..." has no salient rows'


# --- rows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (" France", 'salient[1] is not an object with a "token" and "mappings"'),
        ({"mappings": [" Paris"]}, 'salient[1] has no "token"'),
        (row(None), 'salient[1] has a "token" that is not a string (null)'),
        (row(5), 'salient[1] has a "token" that is not a string (a number)'),
        (
            {"token": " France"},
            'salient[1] (" France") has no "mappings"; each row needs at least one output token',
        ),
        (
            row(mappings=[]),
            'salient[1] (" France") has no "mappings"; each row needs at least one output token',
        ),
        (
            row(mappings=" Paris"),
            'salient[1] (" France"): "mappings" must be a list of strings, got a string',
        ),
        (row(mappings=None), 'salient[1] (" France"): "mappings" must be a list of strings, got null'),
        (row(mappings=[" Paris", 3]), 'salient[1] (" France"): "mappings"[1] is not a string (a number)'),
        (row(mappings=[[" Paris"]]), 'salient[1] (" France"): "mappings"[0] is not a string (a list)'),
        (row(mappings=[True]), 'salient[1] (" France"): "mappings"[0] is not a string (a boolean)'),
    ],
)
def test_bad_row(tmp_path: Path, bad: Any, expected: str) -> None:
    path = write(tmp_path, {"heads": [head("h1"), head("h3", [row(), bad])]})
    assert error(path) == 'head "h3": ' + expected


def test_too_many_mappings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping_tables, "MAX_MAPPINGS", 2)
    path = write(tmp_path, {"heads": [head("h3", [row(" Japan", [" Tokyo", " Kyoto", " Osaka"])])]})
    assert error(path) == 'head "h3": salient[0] (" Japan") has 3 mappings, more than the limit of 2'


def test_the_example_message_shape(tmp_path: Path) -> None:
    path = write(tmp_path, {"heads": [head("h3", [])]})
    with pytest.raises(HeadmapsError, match=r'^.*mappings\.json: head "h3" has no salient rows$'):
        load_mapping_tables(path)
