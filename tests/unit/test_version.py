"""The version is written in one place (linkup_sync.__version__) and CHANGELOG.md keeps the record."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import linkup_sync

ROOT = Path(__file__).resolve().parents[2]
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$")


def test_pyproject_reads_the_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"], "a second copy of the version in pyproject.toml"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "linkup_sync.__version__"}


def test_the_installed_metadata_matches_the_package() -> None:
    # The editable install (make venv) built its metadata from __version__; a mismatch means it is stale.
    assert version("linkup-sync") == linkup_sync.__version__


def test_the_version_is_semantic() -> None:
    assert SEMVER.match(linkup_sync.__version__), linkup_sync.__version__


def test_the_version_is_not_written_anywhere_else_in_the_package() -> None:
    literal = f'"{linkup_sync.__version__}"'
    package = Path(linkup_sync.__file__).parent
    copies = [p for p in package.rglob("*.py") if p.name != "__init__.py" or p.parent != package]
    assert not [p for p in copies if literal in p.read_text(encoding="utf-8")]


def test_the_changelog_follows_keep_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "keepachangelog.com" in text
    sections = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert sections and sections[0] == "Unreleased", "the newest section is [Unreleased]"
    for released in sections[1:]:
        assert SEMVER.match(released.split(" ")[0]), released
    unreleased = text.split("## [Unreleased]", 1)[1].split("\n## [", 1)[0]
    kinds = re.findall(r"^### (\w+)$", unreleased, re.MULTILINE)
    assert kinds and set(kinds) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    assert re.search(r"^- \S", unreleased, re.MULTILINE), "the Unreleased section lists changes"
