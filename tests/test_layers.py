"""Imports go one way (docs/architecture.md): each subpackage imports only the packages its layer
allows, and no module imports, directly or through others, a module that imports it back.
Function-level imports count too: deferring an import hides a cycle, it does not remove it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "crawler"

# package -> the packages its modules may import (besides its own). The same table is drawn in
# docs/architecture.md; a change of layering changes both.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "capture": {"core"},
    "archive": {"core", "capture"},
    "crawl": {"core", "capture", "archive"},
    "rescue": {"core", "capture", "archive"},
    "detection": {"core", "capture", "archive"},
    "reporting": {"core", "capture", "archive", "detection"},
    "jobs": {"core", "capture", "archive", "crawl", "rescue", "detection", "reporting"},
    "schedule": {"core", "capture", "archive", "crawl", "rescue", "detection", "reporting",
                 "jobs"},
    "evidence": {"core", "capture", "archive", "detection", "reporting"},
    "web": {"core", "capture", "archive", "detection", "reporting", "schedule", "evidence"},
    "commands": {"core", "capture", "archive", "crawl", "rescue", "detection", "reporting",
                 "jobs", "schedule", "web", "evidence", "demo"},
    "demo": set(),
}


def _module_name(path: Path, root: Path) -> str:
    """``crawler/archive/warc.py`` -> ``archive.warc``; ``crawler/__main__.py`` -> ``__main__``."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def _imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Return module -> the package modules it imports anywhere in its code, as dotted names
    under ``crawler`` (``from crawler.archive import warc`` counts as ``archive.warc``)."""
    paths = sorted(root.rglob("*.py"))
    modules = {_module_name(p, root) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        name = _module_name(path, root)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and (
                    node.module == "crawler" or node.module.startswith("crawler.")):
                base = node.module.removeprefix("crawler").lstrip(".")
                for alias in node.names:
                    child = f"{base}.{alias.name}" if base else alias.name
                    targets.append(child if child in modules else base)
            elif isinstance(node, ast.Import):
                targets += [a.name.removeprefix("crawler.") for a in node.names
                            if a.name.startswith("crawler.")]
            found.update(t for t in targets if t and t != "__init__")
        graph[name] = found - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return one cycle per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Return every import that crosses into a package its layer may not use."""
    wrong = []
    for module, imported in sorted(graph.items()):
        package = module.split(".")[0]
        if package not in ALLOWED:
            continue  # the package root and ``__main__``: the entry points, above every layer
        for target in sorted(imported):
            other = target.split(".")[0]
            if other != package and other not in ALLOWED[package]:
                wrong.append(f"{module} imports {target}")
    return wrong


def test_every_module_lives_in_a_layer() -> None:
    loose = [m for m in _imports() if m.split(".")[0] not in ALLOWED
             and m not in ("__init__", "__main__")]
    assert loose == []
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} \
        == set(ALLOWED)


def test_no_import_cycles() -> None:
    assert _cycles(_imports()) == []


def test_no_layer_imports_one_above_it() -> None:
    assert _upward(_imports()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_layer_check_finds_an_upward_import(tmp_path: Path) -> None:
    """The checks read real source: a planted upward import (and a deferred one) is found."""
    for package in ("core", "capture", "reporting"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "core" / "errors.py").write_text("X = 1\n")
    (tmp_path / "reporting" / "report.py").write_text("from crawler.core.errors import X\n")
    (tmp_path / "capture" / "urls.py").write_text(
        "def f() -> None:\n    from crawler.reporting import report\n")
    graph = _imports(tmp_path)
    assert graph["capture.urls"] == {"reporting.report"}
    assert _upward(graph) == ["capture.urls imports reporting.report"]
