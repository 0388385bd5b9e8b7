"""Reading a user's operation pairs: JSON and CSV files, and one clear error for each bad one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from describer.errors import HeadmapsError
from describer.maps.operations import load_pairs_file, load_pairs_paths

# --- pairs files -----------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_json_pairs(tmp_path: Path) -> None:
    path = write(tmp_path / "my pairs.json", json.dumps([["cat", "cats"], [" dog ", "dogs"]]))
    loaded = load_pairs_file(path)
    assert loaded.pairs == (("cat", "cats"), ("dog", "dogs"))  # words are stripped
    assert loaded.category == "custom"
    assert loaded.copying is False
    assert loaded.origin == str(path)
    assert loaded.name == "my_pairs"  # the stem, made safe for the name pattern
    assert load_pairs_file(str(path), name="animals").name == "animals"


@pytest.mark.parametrize("header", ["", "source,target\n", "Source , Target\n"])
def test_load_csv_pairs(tmp_path: Path, header: str) -> None:
    path = write(tmp_path / "plural.csv", header + 'cat,cats\n\ndog, dogs\n"a,b",c\n')
    loaded = load_pairs_file(path)
    assert loaded.pairs == (("cat", "cats"), ("dog", "dogs"), ("a,b", "c"))
    assert loaded.name == "plural"
    assert loaded.category == "custom"


def test_load_csv_first_row_kept_unless_exact_header(tmp_path: Path) -> None:
    # a first row that is real data must not be eaten as a header
    path = write(tmp_path / "p.csv", "source,sink\ncat,cats\n")
    assert load_pairs_file(path).pairs == (("source", "sink"), ("cat", "cats"))


def test_load_files_with_a_byte_order_mark(tmp_path: Path) -> None:
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes("source,target\r\ncat,cats\r\n".encode("utf-8-sig"))
    assert load_pairs_file(csv_path).pairs == (("cat", "cats"),)
    json_path = tmp_path / "bom.json"
    json_path.write_bytes(json.dumps([["cat", "cats"]]).encode("utf-8-sig"))
    assert load_pairs_file(json_path).pairs == (("cat", "cats"),)


def test_load_unicode_words(tmp_path: Path) -> None:
    path = write(tmp_path / "fr.json", json.dumps([["house", "maison"], ["tree", "arbre"], ["sea", "mér"]]))
    assert load_pairs_file(path).pairs[-1] == ("sea", "mér")


def assert_error(path: Path, *fragments: str) -> str:
    with pytest.raises(HeadmapsError) as info:
        load_pairs_file(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert_error(tmp_path / "missing.json", "no such pairs file")


def test_directory_is_not_a_pairs_file(tmp_path: Path) -> None:
    assert_error(tmp_path, "no such pairs file")


def test_invalid_json_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json", '[\n  ["cat", "cats"],\n  ["dog" "dogs"]\n]\n')
    assert_error(path, "invalid JSON", "line 3")


@pytest.mark.parametrize(
    "payload",
    [
        {"cat": "cats", "dog": ["dogs", "doggies"]},
        [{"source": "cat", "target": "cats"}, {"source": "dog", "target": "dogs"}, ["dog", "doggies"]],
        [
            {"subject": "cat", "object": "cats", "id": 1},
            {"subject": "dog", "object": "dogs"},
            ["dog", "doggies"],
        ],
    ],
)
def test_other_json_shapes_of_pairs(tmp_path: Path, payload: object) -> None:
    op = load_pairs_file(write(tmp_path / "plural.json", json.dumps(payload)))
    assert op.name == "plural" and set(op.pairs) >= {("cat", "cats"), ("dog", "dogs"), ("dog", "doggies")}


def test_directories_of_pairs_files(tmp_path: Path) -> None:
    data = tmp_path / "datasets"
    data.mkdir()
    write(data / "b_plural.json", json.dumps([["cat", "cats"]]))
    write(data / "a_past.csv", "walk,walked\n")
    write(data / "notes.txt", "not a pairs file")
    single = write(tmp_path / "c_other.json", json.dumps({"big": "bigger"}))
    ops = load_pairs_paths([data, single])
    assert [op.name for op in ops] == ["a_past", "b_plural", "c_other"]
    assert ops[0].pairs == (("walk", "walked"),)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HeadmapsError, match="no .json or .csv pairs files"):
        load_pairs_paths([empty])
    with pytest.raises(HeadmapsError, match="name the same operation: b_plural"):
        load_pairs_paths([data, data / "b_plural.json"])


@pytest.mark.parametrize(
    "payload",
    [
        {"cat": 3},
        {"cat": []},
        [{"source": "cat"}],
        ["cat", "cats"],
        [["cat", "cats", "catty"]],
        [["cat"]],
        [["cat", 1]],
        [["cat", None]],
        [["cat", "cats"], "dog"],
        "cat,cats",
    ],
)
def test_json_not_a_list_of_string_pairs(tmp_path: Path, payload: object) -> None:
    path = write(tmp_path / "shape.json", json.dumps(payload))
    assert_error(path, "expected a JSON list of [source, target] string pairs")


def test_empty_json_list(tmp_path: Path) -> None:
    assert_error(write(tmp_path / "empty.json", "[]"), "no pairs")


def test_csv_row_with_three_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "three.csv", "source,target\ncat,cats\ndog,dogs,puppies\n")
    assert_error(path, "line 3", "two columns")


def test_csv_row_with_one_column(tmp_path: Path) -> None:
    assert_error(write(tmp_path / "one.csv", "cat,cats\ndog\n"), "line 2", "two columns")


@pytest.mark.parametrize("name", ["empty.json", "empty.csv", "blank.csv"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "\n  \n" if name == "blank.csv" else "")
    assert_error(path, "empty")


def test_csv_header_only(tmp_path: Path) -> None:
    assert_error(write(tmp_path / "header.csv", "source,target\n"), "no pairs")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("w.json", json.dumps([["cat", "cats"], ["dog", ""]])),
        ("w.json", json.dumps([["cat", "cats"], ["  ", "dogs"]])),
        ("w.csv", "cat,cats\ndog,\n"),
        ("w.csv", "cat,cats\n ,dogs\n"),
    ],
)
def test_empty_word(tmp_path: Path, name: str, text: str) -> None:
    assert_error(write(tmp_path / name, text), "empty word")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("caf\xe9,coffee\n".encode("latin-1"))
    assert_error(path, "cannot read")
