"""The light environment of `make setup`, `make secret` and `make update` (tools/run_env.py, issue 23):
what it installs (no development tool), when it is rebuilt (stale or foreign), and the Python check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tools.run_env import MARKER, fingerprint, marker_for, needs_rebuild, too_old_text

ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_TOOLS = {"pytest", "moto", "mypy", "ruff", "hypothesis", "cfn-lint", "pytest-xdist", "pre-commit"}


def test_the_light_environment_installs_no_development_tool(tmp_path: Path) -> None:
    """What `tools/run_env.py` installs, resolved by pip itself (a dry run: nothing is installed)."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
            "--no-build-isolation", "--report", str(report), "--constraint", str(ROOT / "requirements-dev.lock"),
            str(ROOT),
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}
    assert {"linkup-sync", "aws-lambda-powertools", "boto3", "urllib3"} <= names
    assert names.isdisjoint(DEVELOPMENT_TOOLS), names & DEVELOPMENT_TOOLS
    assert not any(n.startswith(("mypy", "types-", "boto3-stubs", "pytest")) for n in names), names


def _current(env_dir: Path) -> dict[str, str]:
    expected = marker_for(sys.executable)
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "linkup-sync").write_text("#!/bin/sh\n")
    (env_dir / MARKER).write_text(json.dumps(expected))
    return expected


def test_a_current_environment_is_reused(tmp_path: Path) -> None:
    env_dir = tmp_path / ".venv-run"
    expected = _current(env_dir)
    assert needs_rebuild(env_dir, expected) is None


def test_a_missing_half_built_foreign_or_stale_environment_is_rebuilt(tmp_path: Path) -> None:
    env_dir = tmp_path / ".venv-run"
    expected = marker_for(sys.executable)
    assert needs_rebuild(env_dir, expected) == "it does not exist yet"
    (env_dir / "bin").mkdir(parents=True)  # what a failed pip leaves behind: no marker
    assert needs_rebuild(env_dir, expected) == "it was not finished or not made by this tool"

    other = tmp_path / "other"
    _current(other)
    foreign = {**expected, "python": "/usr/bin/python3.9", "version": "3.9.16"}
    assert needs_rebuild(other, foreign) == "it was made with another Python (" + expected["version"] + ")"
    stale = {**expected, "sources": "0" * 64}
    assert needs_rebuild(other, stale) == "the checkout changed since it was made"
    (other / "bin" / "linkup-sync").unlink()
    assert needs_rebuild(other, expected) == "its linkup-sync command is missing"


def test_the_fingerprint_follows_the_package_sources(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "requirements-dev.lock", "cli/linkup_sync_cli/main.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "layers/linkup_sync/python/linkup_sync").mkdir(parents=True)
    before = fingerprint(tmp_path)
    (tmp_path / "cli/linkup_sync_cli/main.py").write_text("y")
    assert fingerprint(tmp_path) != before


def test_an_old_python_gets_the_exact_fix(tmp_path: Path) -> None:
    assert "sudo dnf install -y python3.11" in too_old_text((3, 9, 16))
    assert "Python 3.9.16" in too_old_text((3, 9, 16))


def test_make_says_how_to_get_python_3_11_before_installing_anything(tmp_path: Path) -> None:
    """CloudShell's python3 is 3.9 and it has no newer one yet: make stops with the command that fixes it."""
    import shutil

    fake = tmp_path / "bin"
    fake.mkdir()
    script = fake / "python3"
    script.write_text('#!/bin/sh\n[ "$1" = "-V" ] && { echo "Python 3.9.16"; exit 0; }\nexit 1\n')
    script.chmod(0o755)
    make = shutil.which("make")
    assert make is not None
    env = {**os.environ, "PATH": str(fake)}  # the Makefile's shell is /bin/bash by its full path
    for target in ("setup", "secret", "update"):
        proc = subprocess.run(
            [make, "--no-print-directory", target, "RUN_VENV=" + str(tmp_path / "light")],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode != 0, proc.stdout
        assert "sudo dnf install -y python3.11" in proc.stderr and "Python 3.9.16" in proc.stderr, proc.stderr
        assert not (tmp_path / "light").exists()  # nothing was installed


def test_make_clean_removes_the_light_and_a_broken_environment_but_keeps_a_working_one(tmp_path: Path) -> None:
    """A .venv left by a failed install (its Python cannot import linkup_sync) was reused by every later
    make: `make clean` removes it, and .venv-run always. Run on a copy of the Makefile only."""
    import shutil

    make = shutil.which("make")
    assert make is not None

    def tree(working: bool) -> Path:
        folder = tmp_path / ("working" if working else "broken")
        (folder / ".venv" / "bin").mkdir(parents=True)
        (folder / ".venv-run" / "bin").mkdir(parents=True)
        shutil.copy2(ROOT / "Makefile", folder / "Makefile")
        python = folder / ".venv" / "bin" / "python"
        python.write_text(f"#!/bin/sh\nexit {0 if working else 1}\n")
        python.chmod(0o755)
        proc = subprocess.run([make, "--no-print-directory", "clean"], cwd=folder, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not (folder / ".venv-run").exists()
        return folder

    assert (tree(working=True) / ".venv").exists()
    assert not (tree(working=False) / ".venv").exists()


def test_setup_update_and_secret_use_the_light_environment_not_the_development_one() -> None:
    """In a fresh clone `make setup`, `make update` and `make secret` build .venv-run only, never .venv."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    rules = {}
    for block in makefile.split("\n\n"):
        for line in block.splitlines():
            if line and not line.startswith(("\t", "#", " ")) and ":" in line and "=" not in line.split(":")[0]:
                target, _, rest = line.partition(":")
                rules[target.strip()] = (rest.split("##")[0].split(), block)
    for target in ("setup", "update", "secret"):
        prerequisites, block = rules[target]
        assert "run-env" in prerequisites and "venv" not in prerequisites, target
        assert "$(RUN_BIN)/" in block and "$(BIN)/" not in block, target
