"""Operations: named lists of (source, target) word pairs, built in or from a user's file.

The 20 built-in operations follow the MAPS paper's four categories. Words are stored
without a leading space; ``tokenize`` applies the paper's filter (source and target must
each be a single token once a leading space is added).
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from describer.errors import HeadmapsError

Category = Literal["algorithmic", "knowledge", "linguistic", "translation", "custom"]
MIN_PAIRS = 30
"""Below this many usable pairs a score is too noisy to trust; we warn."""
LARGE_VOCAB = 100_000
"""The paper raised k for Llama-3's 128k vocabulary; we do the same above this size."""


class Operation(BaseModel):
    """A relation between words that a head may implement."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    """Identifier used on the command line and in outputs."""
    category: Category
    """The paper's category, or ``custom`` for a user's file."""
    description: str = ""
    """One sentence saying what the operation maps to what."""
    paper_name: str | None = None
    """The operation's name in the MAPS paper's tables, where it has one."""
    copying: bool = False
    """Copying operations are scored with a smaller k (the target must be the top token)."""
    pairs: tuple[tuple[str, str], ...] = Field(min_length=1)
    """(source, target) words without a leading space."""
    origin: str = "builtin"
    """``builtin`` or the path of the user's file."""

    @field_validator("pairs")
    @classmethod
    def _non_empty_words(cls, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for source, target in pairs:
            if not source.strip() or not target.strip():
                raise ValueError(f"empty word in pair {[source, target]}")
        return pairs

    def default_k(self, vocab_size: int) -> int:
        """The paper's k: 1 for copying and 10 otherwise, 3 and 25 for vocabularies over 100k."""
        if vocab_size > LARGE_VOCAB:
            return 3 if self.copying else 25
        return 1 if self.copying else 10


@cache
def builtin_operations() -> dict[str, Operation]:
    """The 20 operations shipped with headmaps, by name."""
    folder = files("describer.maps.operations").joinpath("data")
    ops = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            ops[data["name"]] = Operation.model_validate({**data, "pairs": [tuple(p) for p in data["pairs"]]})
    return ops


def select_operations(names: str | None) -> list[Operation]:
    """``all`` (or None) or a comma-separated list of built-in names."""
    ops = builtin_operations()
    if names is None or names.strip() in ("", "all"):
        return list(ops.values())
    chosen: dict[str, Operation] = {}  # a name given twice is analysed once
    for name in (n.strip() for n in names.split(",")):
        if name not in ops:
            raise HeadmapsError(f"unknown operation {name!r}; built-in operations: {', '.join(ops)}")
        chosen[name] = ops[name]
    return list(chosen.values())


def load_pairs_file(path: str | Path, name: str | None = None) -> Operation:
    """A user's operation: a JSON list of ``[source, target]`` lists (or the other JSON shapes of
    ``_json_pairs``), or a two-column CSV."""
    path = Path(path)
    if not path.is_file():
        raise HeadmapsError(f"{path}: no such pairs file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's BOM is not part of the header
    except (OSError, UnicodeDecodeError) as exc:
        raise HeadmapsError(f"{path}: cannot read pairs file ({exc})") from exc
    if not text.strip():
        raise HeadmapsError(f"{path}: pairs file is empty")
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HeadmapsError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        rows = _json_pairs(raw)
        if rows is None:
            raise HeadmapsError(
                f"{path}: expected a JSON list of [source, target] string pairs "
                "(or an object of source: target, or a list of {source, target} objects)"
            )
    else:
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        bad = next((i for i, r in enumerate(rows, 1) if len(r) != 2), None)
        if bad is not None:
            raise HeadmapsError(f"{path}: line {bad} does not have exactly two columns (source,target)")
        if rows and [c.strip().lower() for c in rows[0]] == ["source", "target"]:
            rows = rows[1:]
    pairs = tuple((s.strip(), t.strip()) for s, t in rows)
    if not pairs:
        raise HeadmapsError(f"{path}: no pairs in file")
    try:
        return Operation(
            name=name or _safe_name(path.stem),
            category="custom",
            pairs=pairs,
            origin=str(path),
            description=f"pairs from {path.name}",
        )
    except ValidationError as exc:
        raise HeadmapsError(f"{path}: {exc.errors()[0]['msg']}") from exc


PAIR_KEYS = (("source", "target"), ("subject", "object"), ("input", "output"), ("x", "y"))
"""Field names a list of pair objects may use (datasets written for other tools)."""


def _json_pairs(raw: object) -> list[list[str]] | None:
    """``[[s, t], ...]``, ``{s: t | [t, ...]}`` or ``[{"source": s, "target": t}, ...]`` as pairs;
    None for anything else."""
    if isinstance(raw, dict):
        rows = []
        for s, t in raw.items():
            targets = t if isinstance(t, list) else [t]
            if not targets or not all(isinstance(x, str) for x in targets):
                return None
            rows += [[s, x] for x in targets]
        return rows
    if not isinstance(raw, list):
        return None
    rows = []
    for item in raw:
        if isinstance(item, list) and len(item) == 2 and all(isinstance(w, str) for w in item):
            rows.append(item)
            continue
        keys = next((k for k in PAIR_KEYS if isinstance(item, dict) and set(k) <= item.keys()), None)
        if keys is None or not all(isinstance(item[k], str) for k in keys):
            return None
        rows.append([item[keys[0]], item[keys[1]]])
    return rows


def load_pairs_paths(paths: Sequence[str | Path]) -> list[Operation]:
    """Operations from pairs files and directories of them (their ``*.json`` and ``*.csv``
    files, sorted); each file's stem names its operation."""
    files: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(
                p for p in given.iterdir() if p.suffix.lower() in (".json", ".csv") and p.is_file()
            )
            if not found:
                raise HeadmapsError(f"{given}: no .json or .csv pairs files in this directory")
            files += found
        else:
            files.append(given)
    ops = [load_pairs_file(f) for f in files]
    names = [op.name for op in ops]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise HeadmapsError(f"two pairs files name the same operation: {', '.join(twice)}; rename one")
    return ops


def _safe_name(stem: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in stem)
    return cleaned or "custom"


@dataclass(frozen=True)
class TokenizedOperation:
    """An operation's pairs that survive the tokenizer, as token ids."""

    operation: Operation
    k: int
    source_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    dropped: int
    """Pairs discarded because a word is not a single token."""

    @property
    def n_pairs(self) -> int:
        return len(self.source_ids)


def single_token(tokenizer: object, word: str) -> int | None:
    """The id of ``" " + word`` if it is exactly one token (and not the unknown token), else None."""
    ids = tokenizer.encode(" " + word, add_special_tokens=False)  # type: ignore[attr-defined]
    if len(ids) != 1 or ids[0] == getattr(tokenizer, "unk_token_id", None):
        return None
    return ids[0]


def tokenize(op: Operation, tokenizer: object, vocab_size: int, k: int | None = None) -> TokenizedOperation:
    """Keep the pairs whose source and target are single tokens with a leading space."""
    if k is not None and k < 1:
        raise HeadmapsError(f"k must be at least 1, got {k}")
    sources, targets, seen = [], [], set()
    for source, target in op.pairs:
        s, t = single_token(tokenizer, source), single_token(tokenizer, target)
        if s is None or t is None or s >= vocab_size or t >= vocab_size or (s, t) in seen:
            continue  # ids past the model's vocabulary (tokenizer larger than the embedding) unscorable
        seen.add((s, t))
        sources.append(s)
        targets.append(t)
    if not sources:
        raise HeadmapsError(
            f"operation {op.name!r} has no usable pairs: none of its {len(op.pairs)} pairs has a source and "
            "target that are single tokens (with a leading space) for this tokenizer"
        )
    if len(sources) < MIN_PAIRS:
        warnings.warn(
            f"operation {op.name!r}: only {len(sources)} of {len(op.pairs)} pairs are single tokens "
            f"for this tokenizer (fewer than {MIN_PAIRS}); its scores are noisy",
            stacklevel=2,
        )
    k = k if k is not None else op.default_k(vocab_size)
    return TokenizedOperation(op, k, tuple(sources), tuple(targets), len(op.pairs) - len(sources))
