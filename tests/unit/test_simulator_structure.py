"""The simulators stay checkable one concern at a time: small modules, imports running one way.

The LibreLink Up simulator and the Nightscout stand-in are measuring instruments a reader checks against
docs/librelinkup-api.md and docs/nightscout-api.md; each is a package with one concern per module
(issue 12). These tests keep it so: no module over 600 lines, no import cycle inside tools/simulators,
and the names tests and tools import from the packages still there.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIMULATORS = ROOT / "tools" / "simulators"
MAX_LINES = 600

PACKAGES = ("tools.simulators.nightscout", "tools.simulators.librelinkup")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SIMULATORS.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Modules of tools.simulators that ``path`` imports anywhere (also inside functions or TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES)
    return found


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_simulators_are_packages() -> None:
    assert (SIMULATORS / "nightscout" / "__init__.py").is_file()
    assert (SIMULATORS / "librelinkup" / "__init__.py").is_file()
    assert not (SIMULATORS / "nightscout.py").exists()
    assert not (SIMULATORS / "librelinkup.py").exists()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_simulator_module_is_at_most_600_lines(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines; split it by concern"


def test_the_cycle_finder_sees_a_cycle() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_imports_inside_the_simulators_run_one_way() -> None:
    graph = {name: imports_of(path) - {name} for name, path in MODULES.items()}
    # a submodule importing its own package's __init__ is a cycle too (the __init__ imports it)
    assert graph["tools.simulators.nightscout"] >= {"tools.simulators.nightscout.app"}
    assert cycle_in(graph) is None, f"import cycle: {' -> '.join(cycle_in(graph) or [])}"


def used_from(package: str) -> set[str]:
    """Every name a file of tests/ or tools/ (outside tools/simulators) imports from ``package``."""
    names: set[str] = set()
    for folder in (ROOT / "tests", ROOT / "tools"):
        for path in folder.rglob("*.py"):
            if SIMULATORS in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == package:
                    names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_the_names_tests_and_tools_import_are_exported(package: str) -> None:
    used = used_from(package)
    assert "NightscoutStandIn" in used or "LinkUpSimulator" in used  # the walk sees the importers
    module = importlib.import_module(package)
    missing = sorted(name for name in used if not hasattr(module, name))
    assert not missing, f"{package} no longer exports {missing}"
    assert used <= set(module.__all__), f"{package}.__all__ lacks {sorted(used - set(module.__all__))}"
    private = sorted(name for name in used if name.startswith("_"))
    assert not private, f"tests/tools reach into private names of {package}: {private}"
