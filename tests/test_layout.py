"""The house rules a newcomer relies on, read from the source's syntax trees (docs/CONTRACTS.md, "Layout"):
rooms of bounded size, the project's own import names, no sys.path edits, tests that do not import scripts,
command modules that do not lean on each other, and one definition of the things that used to be repeated.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 450  # hard limit; modules aim at <= 400
FORMATS = {"none", "dynamic", "qdq_s8s8", "qdq_u8s8"}


def _py(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if "__pycache__" not in p.parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imported(tree: ast.Module) -> list[str]:
    """Every module name an import statement names (`from a.b import c` gives a.b and a.b.c)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_no_module_in_edge_or_export_is_above_the_limit():
    big = {_rel(p): n for p in _py("edge", "export") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"split these by concern (limit {MAX_LINES} lines): {big}"


def test_only_the_projects_own_import_names():
    bad = [(_rel(p), m) for p in _py("edge", "export", "tools", "tests") for m in _imported(_tree(p))
           if m.split(".")[0] in ("edge", "export")]
    assert not bad, f"import firstwords.edge / firstwords.export instead: {bad}"


def test_no_sys_path_edits_in_scripts_or_tests():
    edits = []
    for p in _py("edge", "export", "tools", "tests"):
        for node in ast.walk(_tree(p)):
            if (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"):
                edits.append(f"{_rel(p)}:{node.lineno}")
    assert not edits, f"the package is installed: import it, do not edit sys.path: {edits}"


def test_tests_do_not_import_tools():
    scripts = {p.stem for p in (ROOT / "tools").glob("*.py")}
    bad = [(_rel(p), m) for p in _py("tests") for m in _imported(_tree(p))
           if m.split(".")[0] in scripts or m.split(".")[0] == "tools"]
    assert not bad, f"run the tool as a subprocess, or test the package code it calls: {bad}"


def test_command_modules_do_not_import_each_other():
    bad = []
    for p in _py("edge/commands", "export/commands", "tools"):
        own = f"firstwords.{p.parent.parent.name}.commands.{p.stem}" if p.parent.name == "commands" else None
        for m in _imported(_tree(p)):
            parts = m.split(".")
            if len(parts) >= 3 and parts[2] == "commands" and not m.startswith(str(own)):
                bad.append((_rel(p), m))
    assert not bad, f"move the shared helper into a library module: {bad}"


def _sets_openblas(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        return node.args[0].value == "OPENBLAS_NUM_THREADS" and getattr(node.func, "attr", "") in (
            "setdefault", "putenv", "__setitem__")
    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
                   and t.slice.value == "OPENBLAS_NUM_THREADS" for t in targets)
    return False


def test_openblas_threads_are_set_in_one_place():
    where = sorted({_rel(p) for p in _py("edge", "export", "tools") for node in ast.walk(_tree(p))
                    if _sets_openblas(node)})
    assert where == ["edge/__init__.py"], f"only firstwords.edge sets OPENBLAS_NUM_THREADS: {where}"


def test_quantisation_format_names_are_defined_once():
    where = sorted({_rel(p) for p in _py("edge", "export", "tools") for node in ast.walk(_tree(p))
                    if isinstance(node, (ast.Tuple, ast.List, ast.Set))
                    and {e.value for e in node.elts if isinstance(e, ast.Constant)} >= FORMATS})
    assert where == ["edge/quantization.py"], f"import firstwords.edge.quantization instead: {where}"
