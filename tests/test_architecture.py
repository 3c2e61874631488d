"""House rules that a linter does not check: no module imports another module's private name, modules stay
around 500 lines, and a function-local import exists only for a heavy optional dependency, with a comment."""
from __future__ import annotations

import ast
from pathlib import Path

import trainwise

ROOT = Path(trainwise.__file__).parent
MODULES = sorted(ROOT.rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def test_no_module_imports_a_private_name_of_another():
    offenders = [f"{p.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {node.module}"
                 for p in MODULES for node in ast.walk(_tree(p)) if isinstance(node, ast.ImportFrom)
                 and (node.level > 0 or (node.module or "").startswith("trainwise"))
                 for alias in node.names if alias.name.startswith("_") and alias.name != "__future__"]
    assert offenders == []


def test_modules_stay_around_500_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in MODULES}
    assert {k: v for k, v in sizes.items() if v > 500} == {}


def test_function_local_imports_are_heavy_optional_dependencies_with_a_comment():
    bad = []
    for p in MODULES:
        lines = p.read_text().splitlines()
        for fn in ast.walk(_tree(p)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    if isinstance(node, ast.ImportFrom) and node.level > 0:
                        bad.append(f"{p.relative_to(ROOT)}:{node.lineno} imports a trainwise module inside a function")
                    elif "#" not in lines[node.lineno - 1] and "#" not in lines[node.lineno - 2]:
                        bad.append(f"{p.relative_to(ROOT)}:{node.lineno} has no comment saying why it is loaded lazily")
    assert bad == []
