"""Prompt templates: Jinja2 files rendered from stored evidence, named and hashed.

Every description records the name and the sha256 of the template source it came from, so any
description can be reproduced from the store. Built-in templates live in ``templates/*.j2``;
a path to a ``.j2`` file renders a user's own template the same way.
"""

from __future__ import annotations

import hashlib
import traceback
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from describer.errors import HeadmapsError
from describer.tokens import json_literal

__all__ = ["Rendered", "Template", "builtin_names", "load", "render"]

DEFAULT_PROMPT = "facts"


@dataclass(frozen=True)
class Rendered:
    """A rendered prompt and what identifies the template that produced it.

    A template that defines the blocks ``system`` and ``user`` renders into two messages: the
    fixed instructions (the same for every head, so an LLM runtime keeps them in its KV cache
    and an API its prompt cache) and this head's evidence. ``text`` is both, as stored."""

    text: str
    name: str
    """Built-in name, or the user file's path."""
    sha256: str
    """sha256 of the template source."""
    system: str | None = None
    """The ``system`` block, when the template has one."""
    user: str | None = None
    """The ``user`` block (``text`` when the template has no blocks)."""

    @property
    def messages(self) -> list[dict[str, str]]:
        if self.system is None:
            return [{"role": "user", "content": self.user if self.user is not None else self.text}]
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user or ""}]


def _builtin_dir() -> Path:
    return Path(str(resources.files("prompts") / "templates"))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in _builtin_dir().glob("*.j2"))


def _tok(value: object) -> str:
    """A token as a JSON string literal, so leading spaces and odd characters stay visible
    (``describer.tokens.json_literal``: zero-width and bidirectional characters escaped too)."""
    return json_literal(str(value))


def _environment(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain-text prompts, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tok"] = _tok
    return env


@dataclass(frozen=True)
class Template:
    """A loaded template: its name, path, source hash and compiled form."""

    name: str
    path: Path
    sha256: str
    compiled: jinja2.Template

    def render(self, **evidence: Any) -> Rendered:
        try:
            if {"system", "user"} <= set(self.compiled.blocks):
                system, user = (self._block(name, evidence) for name in ("system", "user"))
                text = f"{system}\n\n{user}"
                return Rendered(text + "\n", self.name, self.sha256, system=system, user=user + "\n")
            text = self.compiled.render(**evidence)
        except jinja2.TemplateError as exc:
            raise HeadmapsError(f"{self.path}:{_template_line(exc, self.path)}: {_one_line(exc)}") from exc
        except Exception as exc:  # a template can raise anything Python can (e.g. a bad filter arg)
            where = f"{self.path}:{_template_line(exc, self.path)}"
            raise HeadmapsError(f"{where}: {type(exc).__name__}: {_one_line(exc)}") from exc
        return Rendered(text=text.strip() + "\n", name=self.name, sha256=self.sha256)

    def _block(self, name: str, evidence: dict[str, Any]) -> str:
        context = self.compiled.new_context(dict(evidence))
        return "".join(self.compiled.blocks[name](context)).strip()


def load(name_or_path: str | Path) -> Template:
    """A built-in template by name (``salient``), or a user ``.j2`` file by path."""
    spec = str(name_or_path)
    if spec in builtin_names():
        path, name = _builtin_dir() / f"{spec}.j2", spec
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise HeadmapsError(
                f"unknown prompt {spec!r}: not a built-in ({', '.join(builtin_names())}) or an existing .j2 file"
            )
        path, name = path.resolve(), str(path.resolve())
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HeadmapsError(f"{path}: cannot read the template ({_one_line(exc)})") from exc
    env = _environment(path.parent)
    try:
        compiled = env.get_template(path.name)
    except jinja2.TemplateSyntaxError as exc:
        raise HeadmapsError(f"{path}:{exc.lineno}: {exc.message}") from exc
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    return Template(name=name, path=path, sha256=digest, compiled=compiled)


def render(name_or_path: str | Path, **evidence: Any) -> Rendered:
    """Render a template with ``evidence``; an undefined variable is an error, never blank."""
    return load(name_or_path).render(**evidence)


def _template_line(exc: BaseException, path: Path) -> str:
    """The template line an exception was raised on (Jinja2 rewrites tracebacks to point at the
    template file), or ``?`` when it cannot be told."""
    line: int | None = getattr(exc, "lineno", None)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename and Path(frame.filename).name == path.name and frame.lineno:
            line = frame.lineno
    return str(line) if line else "?"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
