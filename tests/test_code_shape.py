"""The package stays easy to change: small functions, small classes, readable modules.

Measured with radon, as `radon cc -s -n C` and `radon mi -s` report them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from radon.complexity import cc_visit
from radon.metrics import mi_visit

PACKAGE = Path(__file__).resolve().parent.parent / "airflow_parallel_run"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_COMPLEXITY = 15
MAX_CLASS_LINES = 300
MIN_MAINTAINABILITY = 20.0


def _id(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_the_package_has_modules():
    assert len(MODULES) > 30


@pytest.mark.parametrize("path", MODULES, ids=_id)
def test_no_function_is_too_complex(path: Path):
    blocks = cc_visit(path.read_text())
    functions = [b for b in blocks if not hasattr(b, "methods")]
    methods = [m for b in blocks for m in getattr(b, "methods", [])]
    too_complex = [f"{f.name} ({f.complexity})" for f in functions + methods
                   if f.complexity > MAX_COMPLEXITY]
    assert not too_complex, f"{_id(path)}: above complexity {MAX_COMPLEXITY}: {too_complex}"


@pytest.mark.parametrize("path", MODULES, ids=_id)
def test_no_class_is_too_long(path: Path):
    tree = ast.parse(path.read_text())
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES]
    assert not long, f"{_id(path)}: classes over {MAX_CLASS_LINES} lines: {long}"


@pytest.mark.parametrize("path", MODULES, ids=_id)
def test_every_module_is_maintainable(path: Path):
    index = mi_visit(path.read_text(), multi=True)
    assert index >= MIN_MAINTAINABILITY, f"{_id(path)}: maintainability index {index:.1f}"
