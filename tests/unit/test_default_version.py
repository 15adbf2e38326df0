"""One DEFAULT_VERSION (issue 25): the app version the bridge sends until LibreLink Up names a higher
minimum is written once, in librelinkup/versions.py. The code names the constant; the template's
parameter description and the settings page, which a person reads, name the same version."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tools.local_stack import read_template

from linkup_sync.librelinkup.versions import DEFAULT_VERSION
from tests.support.template import REPO_ROOT, TEMPLATE_PATH

VERSIONS = REPO_ROOT / "layers" / "linkup_sync" / "python" / "linkup_sync" / "librelinkup" / "versions.py"
# Shipped code and the command line: what decides the version sent. (The simulators and the test stacks
# stand for Abbott and for a person's explicit LINK_UP_VERSION; they may name any version.)
CODE = [REPO_ROOT / "layers", REPO_ROOT / "cli", REPO_ROOT / "functions"]


def _python_files() -> list[Path]:
    return sorted(p for folder in CODE for p in folder.rglob("*.py") if ".aws-sam" not in p.parts)


def _definitions(tree: ast.AST) -> list[int]:
    """Lines that bind a name DEFAULT_VERSION (an assignment, annotated or not)."""
    found = []
    for node in ast.walk(tree):
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        found += [t.lineno for t in targets if isinstance(t, ast.Name) and t.id == "DEFAULT_VERSION"]
    return found


def _spelled(tree: ast.AST, value: str) -> list[int]:
    """Lines with the string `value` itself as a literal (docstrings are expressions of their own: skipped)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value == value and id(node) not in docstrings
    ]


def test_default_version_is_defined_once_and_spelled_nowhere_else() -> None:
    definitions, spelled = [], []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        name = path.relative_to(REPO_ROOT).as_posix()
        definitions += [f"{name}:{line}" for line in _definitions(tree)]
        if path != VERSIONS:
            spelled += [f"{name}:{line}" for line in _spelled(tree, DEFAULT_VERSION)]
    assert definitions == [
        f"{VERSIONS.relative_to(REPO_ROOT).as_posix()}:{_definitions(ast.parse(VERSIONS.read_text()))[0]}"
    ]
    assert spelled == [], f"the built-in version written out instead of DEFAULT_VERSION: {spelled}"


def test_the_detectors_see_a_second_definition_and_a_spelled_out_version() -> None:
    code = 'DEFAULT_VERSION = "4.16.0"\nclass C:\n    """4.16.0"""\n    DEFAULT_VERSION: str = "4.16.0"\n'
    code += 'def f(version: str = "4.16.0") -> str:\n    """Sends 4.16.0."""\n    return version\n'
    tree = ast.parse(code)
    assert _definitions(tree) == [1, 4]
    assert sorted(_spelled(tree, "4.16.0")) == [1, 4, 5]  # the docstrings are words, not a value


def test_the_template_and_the_settings_page_name_the_built_in_version() -> None:
    parameter = read_template(TEMPLATE_PATH)["Parameters"]["LinkUpVersion"]
    settings_page = (REPO_ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    for text in (parameter["Description"], settings_page):
        assert re.findall(r"built-in version \(([0-9.]+)\)", text) == [DEFAULT_VERSION]
    assert parameter["ConstraintDescription"] == f"must be auto, or an app version such as {DEFAULT_VERSION}"
