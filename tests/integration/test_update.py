"""`linkup-sync update` (`make update`): a clone at release v0.1.0, deployed by `setup`, brought to the
newest release tag with the saved answers, run once, and the CHANGELOG entries in between shown."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from argparse import Namespace
from pathlib import Path

import pytest

from linkup_sync_cli import main as cli
from linkup_sync_cli.setup_deploy import load_answers
from linkup_sync_cli.setup_update import changelog_between, newest_release, run_update
from tests.integration.test_setup import CHECKOUT_FILES, ROOT, Sandbox, _expected_deploy, _invoke, sandbox

__all__ = ["sandbox"]  # the fixture, shared with test_setup.py

CHANGELOG = """# Changelog

## [Unreleased]

- Something not released yet.

## [0.3.0] - 2027-02-01

- The newest release's line.

## [0.2.0] - 2027-01-01

- The second release's line.

## [0.1.0] - 2026-12-01

- The first release's line.
"""


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _releases(origin: Path) -> None:
    """An origin with the releases v0.1.0, v0.2.0 and v0.3.0, and an unreleased commit after them."""
    origin.mkdir()
    _git(origin, "init", "--quiet", "--initial-branch=main")
    for name in CHECKOUT_FILES:
        (origin / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, origin / name)
    sections = CHANGELOG.split("\n## ")
    for version, keep in (("0.1.0", 1), ("0.2.0", 2), ("0.3.0", 3)):
        text = sections[0] + "".join("\n## " + s for s in sections[1:2] + sections[-keep:])
        (origin / "CHANGELOG.md").write_text(text)
        _git(origin, "add", "-A")
        _git(origin, "commit", "--quiet", "-m", f"release {version}")
        _git(origin, "tag", f"v{version}")
    (origin / "CHANGELOG.md").write_text(CHANGELOG + "\n- after the release\n")
    _git(origin, "commit", "--quiet", "-am", "work after the release")


def test_update_brings_the_stack_to_the_newest_release_with_the_saved_answers(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    box = sandbox
    _releases(tmp_path / "origin")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "--quiet", str(tmp_path / "origin"), str(clone))
    _git(clone, "checkout", "--quiet", "v0.1.0")
    box.checkout = clone
    code = cli.main(["setup", "--yes", "--checkout", str(clone), "--sam", str(box.sam)], env=box.answers())
    assert code == 0, capsys.readouterr()
    capsys.readouterr()
    before = len(box.commands())

    out = io.StringIO()
    env = {k: v for k, v in box.env.items() if k not in ("AWS_REGION",)}  # everything from samconfig.toml
    code = run_update(Namespace(checkout=str(clone), sam=str(box.sam)), env, lambda: 0.0, out, out)
    text = out.getvalue()
    assert code == 0, text
    assert _git(clone, "describe", "--tags") == "v0.3.0"  # the newest release, not the work after it
    deploy = _expected_deploy(box)
    deploy[deploy.index("--tags") + 1] = "linkup-sync:version=0.3.0"
    assert box.commands()[before:] == [["sam", "build"], deploy, _invoke(box)]
    assert "✔ The first run" in text and "Updated " + box.stack + " from 0.1.0 to v0.3.0" in text
    assert "The newest release's line." in text and "The second release's line." in text
    assert "The first release's line." not in text and "not released yet" not in text
    saved = load_answers(clone / "samconfig.toml")  # the answers survive the checkout
    assert saved is not None and saved.stack == box.stack and saved.overrides["AlarmEmail"] == "parent@example.org"

    out = io.StringIO()
    assert run_update(Namespace(checkout=str(clone), sam=str(box.sam)), env, lambda: 0.0, out, out) == 0
    assert "the newest release. Nothing to update." in out.getvalue()


def test_update_without_setup_says_to_run_setup_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the command line's own parser, as `make update` runs it (not only run_update)."""
    (tmp_path / "samconfig.toml").write_text("version = 0.1\n")
    assert cli.main(["update", "--checkout", str(tmp_path)], env={}) == 2
    captured = capsys.readouterr()
    assert "run `make setup` first" in captured.out + captured.err


def test_newest_release_and_the_changelog_between_two_versions() -> None:
    assert newest_release("v0.2.0 v0.10.0 v0.9.1 not-a-release") == ("v0.10.0", (0, 10, 0))
    assert newest_release("") is None
    notes = changelog_between(CHANGELOG, (0, 1, 0), (0, 2, 0))
    assert notes.startswith("## [0.2.0]") and "0.3.0" not in notes and "0.1.0" not in notes
    assert "Unreleased" not in changelog_between(CHANGELOG, None, (0, 3, 0))
