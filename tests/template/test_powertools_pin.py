"""The deployed Powertools is the tested one (issue 25): both templates' PowertoolsLayerArn default names
the SSM parameter of the aws-lambda-powertools version requirements-dev.lock pins, never `latest`, and
`make lock` (tools/pin_powertools.py) moves them together."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tools.local_stack import read_template
from tools.pin_powertools import LOCK, PARAMETER_PREFIX, PINNED_FILES, locked_version, parameter_name

from linkup_sync_cli.setup_deploy import PARAMETER_DEFAULTS
from tests.support.template import HOSTED_TEMPLATE_PATH, REPO_ROOT, TEMPLATE_PATH


def test_both_templates_name_the_locked_powertools() -> None:
    version = locked_version()
    lock = (REPO_ROOT / LOCK).read_text(encoding="utf-8")
    assert f"\naws-lambda-powertools=={version}\n" in lock
    expected = f"/aws/service/powertools/python/arm64/python3.13/{version}"
    for path in (TEMPLATE_PATH, HOSTED_TEMPLATE_PATH):
        template = read_template(path)
        parameter = template["Parameters"]["PowertoolsLayerArn"]
        assert parameter["Default"] == expected == parameter_name(version), path.name
        assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
        # the parameter's path follows the runtime and architecture of every function that uses the layer
        users = [
            r["Properties"]
            for r in template["Resources"].values()
            if r["Type"] == "AWS::Serverless::Function" and {"Ref": "PowertoolsLayerArn"} in r["Properties"]["Layers"]
        ]
        assert users, path.name
        assert {(f["Runtime"], tuple(f["Architectures"])) for f in users} == {("python3.13", ("arm64",))}
    assert PARAMETER_DEFAULTS["PowertoolsLayerArn"] == expected  # what the setup command calls the default


def test_nothing_in_the_repository_deploys_the_latest_powertools() -> None:
    for name in PINNED_FILES:
        text = (REPO_ROOT / name).read_text(encoding="utf-8")
        assert PARAMETER_PREFIX + "latest" not in text, name
        versions = set(re.findall(re.escape(PARAMETER_PREFIX) + r"([0-9][0-9A-Za-z.+-]*)", text))
        assert versions == {locked_version()}, name


def test_make_lock_pins_the_templates_after_pip_compile() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    assert recipe.index("pip-compile") < recipe.index("-m tools.pin_powertools")


def copy_of_the_repository(tmp_path: Path) -> Path:
    for name in (LOCK, *PINNED_FILES):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / name, tmp_path / name)
    return tmp_path


def run_tool(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.pin_powertools", "--root", str(root), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tool_moves_every_pinned_file_to_a_new_locked_version(tmp_path: Path) -> None:
    root = copy_of_the_repository(tmp_path)
    old = locked_version()
    before = {name: (root / name).read_text(encoding="utf-8") for name in PINNED_FILES}
    lock = root / LOCK
    lock.write_text(
        lock.read_text(encoding="utf-8").replace(f"aws-lambda-powertools=={old}\n", "aws-lambda-powertools==3.99.1\n"),
        encoding="utf-8",
    )
    assert run_tool(root, "--check").returncode == 1  # the templates still name the old version
    done = run_tool(root)
    assert done.returncode == 0, done.stderr
    assert "3.99.1" in done.stdout
    for name in PINNED_FILES:
        after = (root / name).read_text(encoding="utf-8")
        assert after == before[name].replace(parameter_name(old), parameter_name("3.99.1")), name
        assert parameter_name("3.99.1") in after, name
    assert read_template(root / "template.yaml")["Parameters"]["PowertoolsLayerArn"]["Default"] == parameter_name(
        "3.99.1"
    )
    assert read_template(root / "hosted.yaml")["Parameters"]["PowertoolsLayerArn"]["Default"] == parameter_name(
        "3.99.1"
    )
    again = run_tool(root)  # a second run changes nothing
    assert again.returncode == 0 and "nothing to change" in again.stdout
    assert run_tool(root, "--check").returncode == 0


def test_the_tool_replaces_latest_too(tmp_path: Path) -> None:
    root = copy_of_the_repository(tmp_path)
    template = root / "hosted.yaml"
    template.write_text(
        template.read_text(encoding="utf-8").replace(parameter_name(locked_version()), PARAMETER_PREFIX + "latest"),
        encoding="utf-8",
    )
    checked = run_tool(root, "--check")
    assert checked.returncode == 1 and "hosted.yaml" in checked.stderr
    assert run_tool(root).returncode == 0
    assert read_template(template)["Parameters"]["PowertoolsLayerArn"]["Default"] == parameter_name(locked_version())


@pytest.mark.parametrize("broken", ["lock", "template"])
def test_the_tool_refuses_what_it_cannot_pin(tmp_path: Path, broken: str) -> None:
    root = copy_of_the_repository(tmp_path)
    if broken == "lock":  # no Powertools in the lock: nothing to pin to
        lock = root / LOCK
        lock.write_text(re.sub(r"(?m)^aws-lambda-powertools==.*\n", "", lock.read_text(encoding="utf-8")), "utf-8")
    else:  # the parameter's default moved elsewhere: the tool must be told
        template = root / "template.yaml"
        template.write_text(template.read_text(encoding="utf-8").replace(PARAMETER_PREFIX, "/elsewhere/"), "utf-8")
    before = {name: (root / name).read_text(encoding="utf-8") for name in PINNED_FILES}
    done = run_tool(root)
    assert done.returncode == 2
    assert "pin_powertools:" in done.stderr
    if broken == "template":
        assert "template.yaml" in done.stderr
    assert {name: (root / name).read_text(encoding="utf-8") for name in PINNED_FILES} == before
