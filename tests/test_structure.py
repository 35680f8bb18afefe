"""The tree's shape, machine-checked: no import circle among DetScope's own modules (imports
inside functions included: a circle hidden in a function is still two modules that need each
other), read with ``ast`` without importing anything."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("detengine", "app")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The DetScope modules ``name`` imports (a ``from pkg import mod`` counts as ``pkg.mod``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = (".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level else node.module)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
    return (found & set(modules)) - {name}


def import_circles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_no_import_circle():
    assert import_circles() == []


def test_the_checker_sees_a_circle(tmp_path, monkeypatch):
    """A circle through a function-level import is found (the check can fail)."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "app" / "a.py").write_text("from . import b\n")
    (tmp_path / "app" / "b.py").write_text("def f():\n    from .a import g\n")
    import sys
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_circles() == [["app.a", "app.b"]]


def test_the_window_reaches_the_engine_only_through_the_facade():
    """Every ``detengine`` import in ``app/`` names ``detengine.api`` (napari's import contract)."""
    bad = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            bad += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                    if n.split(".")[0] == "detengine" and n != "detengine.api"]
    assert bad == []


def test_every_engine_module_imports_without_qt():
    """In a fresh interpreter: import every ``detengine`` module, then no Qt module is loaded."""
    import subprocess
    import sys
    names = sorted(m for m in _modules() if m.split(".")[0] == "detengine" and not m.endswith("__main__"))
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "qt = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'shiboken6')]\n"
            "print(len(sys.modules), qt)\n"
            "sys.exit(1 if qt else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(names) > 50


def test_every_colour_of_the_window_is_named_in_the_theme():
    """A colour literal outside app/theme.py is a colour two views will disagree on."""
    import re
    literal = re.compile(r"#[0-9a-fA-F]{6}\b")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "app").rglob("*.py") if p.name != "theme.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if literal.search(line)]
    assert not found, f"colour literals outside app/theme.py: {found}"
