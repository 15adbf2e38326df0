"""`make type` checks every Python folder with mypy --strict: the package, the handler, the tools and the
tests (so the fakes are checked against the Protocols they stand in for)."""

from __future__ import annotations

import tomllib

from tests.support.template import REPO_ROOT


def test_mypy_is_strict_over_the_package_the_handler_the_tools_and_the_tests() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["strict"] is True
    assert {"linkup_sync", "tools", "tests"} <= set(config["packages"])
    assert "app" in config["modules"] and "functions/sync" in config["mypy_path"]
    # every handler module is named, so a new one cannot slip past the check
    handlers = {p.stem for p in (REPO_ROOT / "functions").rglob("*.py")}
    assert handlers <= set(config["modules"])
