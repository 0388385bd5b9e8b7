"""What every command shares on the terminal: the two consoles, one-line errors with exit 2,
warnings, progress bars, and writing output files atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from describer.errors import HeadmapsError

err = Console(stderr=True)
out = Console()


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """A user's mistake is one ``error:`` line and exit 2, never a traceback."""
    try:
        yield
    except HeadmapsError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except MemoryError:
        fail("out of memory; try a smaller model or --device cuda")


def interactive() -> bool:
    """Progress bars only on a terminal (or when HEADMAPS_PROGRESS=1 asks for them)."""
    return err.is_terminal or os.environ.get("HEADMAPS_PROGRESS") == "1"


def make_bar(label: TextColumn, *extra: TextColumn) -> Progress:
    """A progress bar on stderr: ``label``, the bar, done/total, elapsed, remaining, ``extra``."""
    return Progress(
        label,
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra,
        console=err,
        transient=False,
        disable=not interactive(),
    )


@contextmanager
def progress() -> Iterator[Callable[[str, int, int], None]]:
    """A bar per stage; yields ``report(stage, done, total)``."""
    if not interactive():
        # transformers' own tqdm bars (loading weights, GGUF dequantisation) would litter a
        # redirected stderr the same way ours would.
        # transformers takes seconds to import: only commands that load a model get here.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    bar = make_bar(TextColumn("{task.description:<22}"))
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done)

    with bar:
        yield report


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file so an interrupted run never leaves half a file."""
    path = path.expanduser()
    if path.parent and not path.parent.exists():
        raise HeadmapsError(f"{path}: directory {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it an ordinary file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_parent(path: Path | None) -> None:
    """Refuse an output path whose directory does not exist, before any work is done."""
    if path is not None and not path.expanduser().parent.exists():
        raise HeadmapsError(f"{path}: directory {path.parent} does not exist")
