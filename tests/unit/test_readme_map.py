"""The contributing page's "Where things are" (docs/contributing.md; the README's until issue 22) stays true:
every `file: name` of the path of one reading, and every folder or file of the layout, exists."""

from __future__ import annotations

import ast
import re

from tests.support.template import REPO_ROOT

PAGE = (REPO_ROOT / "docs" / "contributing.md").read_text(encoding="utf-8")
SECTION = PAGE.split("\n## Where things are\n", 1)[1].split("\n## ", 1)[0]


def _defined(path: str) -> set[str]:
    """Top-level functions and classes of a module, and Class.method for each method."""
    tree = ast.parse((REPO_ROOT / path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{n.name}" for n in node.body if isinstance(n, ast.FunctionDef)}
    return names


def test_every_step_of_the_path_of_one_reading_names_a_real_function() -> None:
    steps = re.findall(r"`([\w/.]+\.py): ([\w.]+)`", SECTION)
    assert len(steps) >= 8, steps
    missing = [f"{path}: {name}" for path, name in steps if name not in _defined(path)]
    assert not missing, missing


def test_every_place_in_the_layout_exists() -> None:
    layout = SECTION.split("Layout:", 1)[1].split("```", 2)[1]
    place = re.compile(r"[\w.]+/[\w./]*|\w+\.(py|yaml|toml)")
    places: list[str] = []
    for line in layout.splitlines():
        for word in line.split():  # the places open the line; the description follows them
            if not place.fullmatch(word):
                break
            places.append(word)
    assert len(places) >= 15, places
    missing = [p for p in places if not (REPO_ROOT / p).exists()]
    assert not missing, missing


def test_the_module_table_names_every_module_of_the_layer_and_only_those() -> None:
    """Issue 25: the map follows the modules; a new, moved or removed module must change it."""
    table = PAGE.split("\n### The package, module by module\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    named = {name for row in rows for name in re.findall(r"`([\w/]+\.py)`", row)}
    package = REPO_ROOT / "layers" / "linkup_sync" / "python" / "linkup_sync"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if p.name != "__init__.py"}
    assert len(modules) > 40, modules  # the walk found the package
    assert not modules - named, f"modules the map does not name: {sorted(modules - named)}"
    assert not named - modules, f"the map names modules that do not exist: {sorted(named - modules)}"


HOW_IT_WORKS = (REPO_ROOT / "docs" / "how-it-works.md").read_text(encoding="utf-8")
LAYER = REPO_ROOT / "layers" / "linkup_sync" / "python" / "linkup_sync"


def _resolves(dotted: str) -> bool:
    """`module.name...` of the layer (`sync.SyncService.run`, `state.incidents`): the longest module
    prefix imports, and the rest are attributes defined in it (a name it only imports is not its)."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module("linkup_sync." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        module = found
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
            if getattr(found, "__module__", module.__name__) != module.__name__:  # type: ignore[attr-defined]
                return False  # only imported there: its home is elsewhere
        return True
    return False


def test_the_path_of_one_reading_in_how_it_works_names_real_modules_and_functions() -> None:
    """docs/how-it-works.md tells the same path in the layer's dotted names (`sync.SyncService.run`) and
    file names (`breakers.py`): each one exists (issue 25 moved many of them)."""
    path = HOW_IT_WORKS.split("\nThe path of one reading:\n", 1)[1].lstrip("\n").split("\n\n", 1)[0]
    named = re.findall(r"`([a-z_]+(?:\.[A-Za-z_]+)+)`", path)
    dotted = [n for n in named if not n.endswith(".py") and n != "app.handler"]
    files = [n for n in named if n.endswith(".py")]
    assert len(dotted) >= 12 and {"sync.SyncService.run", "incidents.desk.observe"} <= set(dotted), dotted
    assert "breakers.py" in files, files
    assert "`app.handler` (functions/sync/app.py)" in path and "handler" in _defined("functions/sync/app.py")
    assert [n for n in dotted if not _resolves(n)] == []
    assert [f for f in files if not (LAYER / f).is_file()] == []
    assert not _resolves("incidents.observe") and not _resolves("sync.Uploader")  # names from before the split
