"""The package's import graph: no cycles, a core that knows no integration or concrete sink.

Read from the source with :mod:`ast`, imports inside functions included, so that a lazy
import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aiolog"

#: The emit path, the queue, the record code and the listener.
CORE = ("aiolog._handler", "aiolog._queue", "aiolog._record", "aiolog._listener", "aiolog._runner")
#: What the core must not know of.
INTEGRATIONS = ("aiolog.dictconfig", "aiolog.structlog", "aiolog._config")
#: The sinks' shared parts (everything else under aiolog.sinks is a concrete sink).
SINK_SHARED = ("aiolog.sinks", "aiolog.sinks._base", "aiolog.sinks._adapter")


def module_name(path: Path) -> str:
    """``aiolog/sinks/file.py`` -> ``aiolog.sinks.file``; a package is its ``__init__``."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The aiolog modules ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # "from aiolog import _exit" imports the module aiolog._exit.
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    """Every aiolog module and the aiolog modules it imports."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    edges = {module_name(path): imported(path, modules) for path in paths}
    # Importing a submodule runs its package's __init__ first: that is not an edge back.
    return {m: {d for d in deps if not m.startswith(f"{d}.")} for m, deps in edges.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The elementary cycles found by a depth-first search (each once, from its least node)."""
    found: list[list[str]] = []

    def visit(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                found.append([*path, start])
            elif nxt > start and nxt not in path:
                visit(start, nxt, [*path, nxt])

    for start in sorted(edges):
        visit(start, start, [start])
    return found


def test_the_graph_is_read_from_the_source() -> None:
    """The reader sees the package's modules and the imports inside functions too."""
    edges = graph()
    assert "aiolog._listener" in edges
    assert "aiolog.sinks.file" in edges["aiolog.sinks"]  # imported inside sink()'s factories
    assert [["a", "b", "a"]] == cycles({"a": {"b"}, "b": {"a"}})


def test_there_are_no_import_cycles() -> None:
    """No module imports itself back, even through imports inside functions."""
    assert [] == cycles(graph())


@pytest.mark.parametrize("core", CORE)
def test_the_core_knows_no_integration_nor_concrete_sink(core: str) -> None:
    """The emit path, queue, records and listener import no dictConfig, structlog or sink."""
    deps = graph()[core]
    assert set() == {d for d in deps if d in INTEGRATIONS}
    concrete = {d for d in deps if d.startswith("aiolog.sinks") and d not in SINK_SHARED}
    assert set() == concrete


def test_no_sink_imports_the_listener_or_the_handler() -> None:
    """Sinks depend on their base and helpers, never on the listener or the emit path."""
    edges = graph()
    offending = {
        (sink, dep)
        for sink, deps in edges.items()
        if sink.startswith("aiolog.sinks")
        for dep in deps
        if dep in ("aiolog._listener", "aiolog._runner", "aiolog._handler", "aiolog.dictconfig")
    }
    assert set() == offending


def top_level_imports(path: Path) -> set[str]:
    """The top-level packages ``path`` imports, anywhere in the file (relative ones left out)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.partition(".")[0])
    return found


#: The benchmark's peers: only the repository's suite (``benchmarks/``) may import them.
BENCHMARK_PEERS = {"loguru", "aiologger", "picologging", "matplotlib", "benchmarks"}


def test_the_wheel_imports_neither_the_benchmarks_nor_their_peers() -> None:
    """``benchmarks/`` builds on ``aiolog._bench``, never the reverse; no peer is imported."""
    offending = {
        (module_name(path), dep)
        for path in sorted(PACKAGE.rglob("*.py"))
        for dep in top_level_imports(path) & BENCHMARK_PEERS
    }
    assert set() == offending


@pytest.mark.parametrize("module", ["_bench.py", "_bench_worker.py"])
def test_the_shipped_bench_has_only_the_core_setups(module: str) -> None:
    """``python -m aiolog bench`` compares the stdlib and aiolog, no third-party peer."""
    assert "structlog" not in top_level_imports(PACKAGE / module)


#: The formatting modules, each allowed to import only those listed before it:
#: value encoding, the record's fields, the JSON and the text formatters, the public module.
FORMATTING = (
    "aiolog._encode",
    "aiolog._fields",
    "aiolog._json",
    "aiolog._text",
    "aiolog.formatting",
)


@pytest.mark.parametrize("index", range(len(FORMATTING)))
def test_the_formatting_modules_are_layered(index: int) -> None:
    """Encoding knows no record, the fields know no formatter, JSON and text not each other."""
    module = FORMATTING[index]
    forbidden = set(FORMATTING[index + 1 :])
    if module == "aiolog._text":
        forbidden.add("aiolog._json")  # siblings: neither imports the other
    assert set() == graph()[module] & forbidden


def test_the_public_formatting_names_stay_importable_from_aiolog_formatting() -> None:
    """``aiolog.formatting.X`` keeps working for every name it exports (dictConfig uses it)."""
    import aiolog.formatting

    for name in aiolog.formatting.__all__:
        assert getattr(aiolog.formatting, name) is not None
    assert "aiolog.formatting" == aiolog.formatting.formatter_for.__module__


def test_class_names_are_unique_in_the_package() -> None:
    """One name, one class: a newcomer finds a class by its name (top-level classes)."""
    seen: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                seen.setdefault(node.name, []).append(str(path.relative_to(PACKAGE)))
    assert {} == {name: where for name, where in seen.items() if len(where) > 1}
