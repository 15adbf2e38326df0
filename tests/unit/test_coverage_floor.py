"""`make test` measures the line coverage of the layer and fails under COV_FLOOR (issue 25)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import TESTS

ROOT = TESTS.parent
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def make_variable(name: str) -> str:
    match = re.search(rf"^{name} \??:?= (.+)$", MAKEFILE, re.MULTILINE)
    assert match, f"the Makefile defines {name}"
    return match.group(1).strip()


def test_make_test_runs_pytest_with_the_layers_coverage_and_its_floor() -> None:
    floor = float(make_variable("COV_FLOOR"))
    assert 80 <= floor <= 100
    coverage = make_variable("COVERAGE").split()
    assert coverage == ["--cov=linkup_sync", "--cov-report=term", "--cov-fail-under=$(COV_FLOOR)"]
    recipe = MAKEFILE.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    pytest_line = next(line for line in recipe.splitlines() if "/pytest" in line)
    assert "-n 2" in pytest_line and "$(COVERAGE)" in pytest_line


def test_pytest_cov_is_a_locked_dev_tool() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert any(requirement.startswith("pytest-cov") for requirement in extras["dev"])
    lock = (ROOT / "requirements-dev.lock").read_text(encoding="utf-8")
    assert re.search(r"^pytest-cov==\d", lock, re.MULTILINE)
    assert re.search(r"^coverage==\d", lock, re.MULTILINE)


def run_with_floor(floor: str, data: Path) -> subprocess.CompletedProcess[str]:
    """A small test file under make test's coverage options, in a pytest of its own (its data file in
    `data`, not the repository's)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "--cov=linkup_sync",
            "--cov-report=term",
            f"--cov-fail-under={floor}",
            "tests/unit/test_plausibility.py",
        ],
        cwd=ROOT,
        env={**os.environ, "COVERAGE_FILE": str(data / ".coverage")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_floor_fails_the_run_and_the_table_names_the_layer(tmp_path: Path) -> None:
    """The options measure linkup_sync (its modules in the table) and a total under the floor fails."""
    passed = run_with_floor("0", tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "linkup_sync/" in passed.stdout and re.search(r"^TOTAL\s", passed.stdout, re.MULTILINE)
    assert "tests/" not in passed.stdout.split("coverage:", 1)[1]  # the layer only, not the tests
    failed = run_with_floor("100", tmp_path)  # this one file does not run the whole layer
    assert failed.returncode != 0
    assert "Required test coverage of 100% not reached" in failed.stdout
