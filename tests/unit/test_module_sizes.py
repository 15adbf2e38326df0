"""No module of the layer is over 400 lines (issue 25): a module that long does several jobs.

OTHER_PARTS names the modules issue 25's other parts split in their own branches; the lead empties it
when they are merged, and from then on every module is held to the limit.
"""

from __future__ import annotations

from pathlib import Path

LAYER = Path(__file__).resolve().parents[2] / "layers" / "linkup_sync" / "python" / "linkup_sync"
MAX_LINES = 400
OTHER_PARTS = {"sync.py", "incidents.py", "settings.py", "librelinkup/parsing.py"}
# Split in this part: what they were, and the modules they became.
SPLIT = {
    "http.py": ("http.py", "http_request.py", "http_body.py", "http_watchdog.py"),
    "errors.py": (
        "errors/__init__.py",
        "errors/base.py",
        "errors/linkup.py",
        "errors/nightscout.py",
        "errors/state.py",
    ),
    "nightscout/v3.py": ("nightscout/v3.py", "nightscout/v3_access.py"),
}


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_layer_module_is_over_400_lines() -> None:
    modules = {path.relative_to(LAYER).as_posix(): lines(path) for path in LAYER.rglob("*.py")}
    assert len(modules) > 40  # the walk found the layer
    too_long = {name: count for name, count in modules.items() if count > MAX_LINES and name not in OTHER_PARTS}
    assert too_long == {}


def test_the_split_modules_exist_and_each_is_short() -> None:
    assert not (LAYER / "errors.py").exists()  # the package replaced it: one home for the errors
    for parts in SPLIT.values():
        for part in parts:
            assert 0 < lines(LAYER / part) <= MAX_LINES, part
