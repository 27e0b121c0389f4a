"""Import rules between the packages, checked as code (docs/ARCHITECTURE.md, "may import").

- `lint-imports` checks the contracts in pyproject.toml ([tool.importlinter]): scoring imports
  no service library and nothing of grader_api or worker; grader_api.lifecycle imports no
  entry point (routers, web, cli) and no worker. The tests below run it on the checkout and
  show that each contract breaks when a forbidden import is planted.
- No grader_api module imports worker when it is imported (module level, or a class body or
  module-level block): the worker is loaded only by the functions that start or call it, such
  as `grade serve` in grader_api.cli.server. import-linter cannot say this (it sees imports
  inside functions too), so an AST walk checks it.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


# -- worker is not imported at grader_api import time ------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportTimeImports(ast.NodeVisitor):
    """Modules a file imports while it is itself being imported: everything but function bodies
    and `if TYPE_CHECKING:` blocks (decorators and default values do run at import time)."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in (*node.decorator_list, *node.args.defaults, *node.args.kw_defaults):
            if expr is not None:
                self.visit(expr)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in (*node.args.defaults, *node.args.kw_defaults):
            if expr is not None:
                self.visit(expr)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.extend((node.lineno, alias.name) for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:  # relative imports stay inside the package
            self.found.append((node.lineno, node.module))

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("worker.x") / __import__("worker.x") with a literal name
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self.found.append((node.lineno, first.value))
        self.generic_visit(node)


def import_time_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of each import that runs when a module with this source is imported."""
    visitor = _ImportTimeImports()
    visitor.visit(ast.parse(source))
    return visitor.found


def worker_imports_at_import_time(package_dir: Path) -> list[str]:
    """'file:line module' for every import of worker that runs when a module under
    `package_dir` is imported."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        for line, module in import_time_imports(path.read_text(encoding="utf-8")):
            if module == "worker" or module.startswith("worker."):
                found.append(f"{path.relative_to(package_dir.parent)}:{line} {module}")
    return found


def test_no_grader_api_module_imports_worker_at_import_time():
    assert worker_imports_at_import_time(ROOT / "grader_api") == []


def test_the_walk_finds_import_time_imports_and_only_those():
    source = '''
import os, worker
from worker.sandbox import pool
from typing import TYPE_CHECKING
from . import sibling
if TYPE_CHECKING:
    from worker.relays import make_relay
else:
    import worker.else_branch
try:
    from worker.sweeper import SweeperThread
except ImportError:
    import worker.fallback
class Settings:
    import worker.in_class_body
    def method(self):
        import worker.in_method
def start(flag=__import__("worker.in_default")):
    from worker.in_function import run
    importlib.import_module("worker.lazy")
async def serve():
    import worker.in_async
LOADED = importlib.import_module("worker.dynamic")
'''
    assert import_time_imports(source) == [
        (2, "os"), (2, "worker"), (3, "worker.sandbox"), (4, "typing"), (9, "worker.else_branch"),
        (11, "worker.sweeper"), (13, "worker.fallback"), (15, "worker.in_class_body"),
        (18, "worker.in_default"), (23, "worker.dynamic"),
    ]


def test_a_planted_module_level_worker_import_fails_the_check(tmp_path):
    package = tmp_path / "grader_api"
    shutil.copytree(ROOT / "grader_api", package, ignore=shutil.ignore_patterns("__pycache__"))
    assert worker_imports_at_import_time(package) == []
    (package / "services" / "planted.py").write_text(
        "def lazy():\n    import worker.grading\n\nfrom worker.sweeper import sweep_once\n", encoding="utf-8")
    assert worker_imports_at_import_time(package) == ["grader_api/services/planted.py:4 worker.sweeper"]


# -- import-linter contracts (pyproject.toml) ------------------------------------------------


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_contracts_hold_on_the_checkout():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and " KEPT" in result.stdout


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The three packages and pyproject.toml, copied where a test may plant imports."""
    for package in ("scoring", "grader_api", "worker"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "grader_api" / "lifecycle").mkdir(exist_ok=True)
    (tmp_path / "grader_api" / "lifecycle" / "__init__.py").touch()
    return tmp_path


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("scoring/metrics/planted.py", "import sqlalchemy", "scoring imports no service library"),
    ("scoring/planted.py", "def f():\n    from grader_api.config import Settings\n", "scoring imports no service"),
    ("scoring/parsers/planted.py", "from worker import grading", "scoring imports no service library"),
    ("grader_api/lifecycle/planted.py", "from grader_api.web import render", "grader_api.lifecycle imports no"),
    ("grader_api/lifecycle/planted.py", "import worker.sweeper", "grader_api.lifecycle imports no"),
])
def test_a_planted_import_breaks_its_contract(project_copy, module, line, contract):
    assert _lint_imports(project_copy).returncode == 0
    (project_copy / module).write_text(line + "\n", encoding="utf-8")
    result = _lint_imports(project_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [row for row in result.stdout.splitlines() if row.endswith(" BROKEN")]
    assert len(broken) == 1 and broken[0].startswith(contract), result.stdout
