"""The package's shape: no import cycles, pure steps without Prefect, modules of a readable size."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"ace.flows": "flows", "ace.tasks": "tasks", "ace.storage": "storage"}


def _modules() -> dict[str, Path]:
    mods = {"ace": ROOT / "ace" / "__init__.py"}
    for pkg, folder in PACKAGES.items():
        for f in (ROOT / folder).rglob("*.py"):
            parts = [p for p in f.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            mods[".".join([pkg, *parts])] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every import of an ``ace`` module by another, at any depth (inside functions too)."""
    graph = {}
    for name, f in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ace"):
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("ace")]
            deps |= {t for t in targets if t in mods and t != name}
        graph[name] = deps
    return graph


def test_no_import_cycles():
    graph = _imports(_modules())
    done, path = set(), []

    def visit(m):
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if m in done:
            return
        path.append(m)
        for d in sorted(graph[m]):
            visit(d)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


def test_the_steps_import_without_prefect():
    """Every module of ace.tasks (the algorithm, models, report, demo) and ace.storage imports with
    Prefect blocked, and so do the result types of the public API."""
    names = [m for m in _modules() if m.startswith(("ace.tasks", "ace.storage"))]
    code = ("import importlib, sys\nsys.modules['prefect'] = None\n"
            f"for n in {names!r}:\n    importlib.import_module(n)\n"
            "from ace import ACEResult, ConceptResult, PARAMS\nprint(len(PARAMS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]


def test_modules_stay_small():
    big = {m: n for m, f in _modules().items() if (n := len(f.read_text().splitlines())) > 400}
    assert not big, f"split these by responsibility: {big}"


def test_the_public_api():
    import ace

    for name in ace.__all__:
        assert getattr(ace, name) is not None
