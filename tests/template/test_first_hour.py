"""Issue 13 (the first hour of a new user), the template's side: the FailedRuns Rule, the layer build
without __pycache__, and the command line accepting exactly what the parameters allow."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from linkup_sync.errors import ConfigError
from linkup_sync.settings import REGION_VALUES, VERSION_PATTERN, Settings
from tests.support.template import LAYER_ID, REPO_ROOT, load_template

BASE = {"STATE_TABLE_NAME": "t", "CREDENTIALS_SECRET_ID": "arn:secret"}


# --- Rules, evaluated the way CloudFormation does ----------------------------------------------------


def _value(node: Any, params: dict[str, str]) -> Any:
    if isinstance(node, dict):
        ((name, arg),) = node.items()
        if name == "Ref":
            return params[arg]
        if name == "Fn::Equals":
            return _value(arg[0], params) == _value(arg[1], params)
        if name == "Fn::Contains":
            return _value(arg[1], params) in [_value(v, params) for v in arg[0]]
        if name == "Fn::Not":
            return not _value(arg[0], params)
        if name == "Fn::And":
            return all(_value(v, params) for v in arg)
        if name == "Fn::Or":
            return any(_value(v, params) for v in arg)
        raise AssertionError(f"rule function {name} is not evaluated by this test")
    if isinstance(node, list):
        return [_value(v, params) for v in node]
    return str(node)


def _rules_pass(template: dict[str, Any], overrides: dict[str, str]) -> bool:
    params = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    params.update(overrides)
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not _value(rule["RuleCondition"], params):
            continue
        if not all(_value(a["Assert"], params) for a in rule["Assertions"]):
            return False
    return True


def test_rule_refuses_more_failed_runs_than_the_window_for_every_pair() -> None:
    template = load_template()
    low = template["Parameters"]["FailedRunsToAlarm"]["MinValue"]
    high = template["Parameters"]["FailedRunsWindow"]["MaxValue"]
    assert template["Parameters"]["FailedRunsToAlarm"]["MaxValue"] == high
    wrong = []
    for to_alarm in range(low, high + 1):
        for window in range(low, high + 1):
            ok = _rules_pass(template, {"FailedRunsToAlarm": str(to_alarm), "FailedRunsWindow": str(window)})
            if ok != (to_alarm <= window):
                wrong.append((to_alarm, window))
    assert not wrong, f"the Rules decide these (FailedRunsToAlarm, FailedRunsWindow) pairs wrongly: {wrong[:10]}"
    assert not _rules_pass(template, {"FailedRunsToAlarm": "7", "FailedRunsWindow": "6"})  # the example
    assert _rules_pass(template, {})  # the defaults deploy


# --- the layer build ----------------------------------------------------------------------------------


def test_layer_is_built_by_its_makefile_without_pycache(tmp_path: Path) -> None:
    layer = load_template()["Resources"][LAYER_ID]
    assert layer["Metadata"]["BuildMethod"] == "makefile"  # so `sam build` runs the target below
    source = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "layers" / "linkup_sync", source, ignore=shutil.ignore_patterns("*.egg-info"))
    # What running the command line from the source tree leaves behind:
    (source / "python" / "linkup_sync" / "__pycache__").mkdir(exist_ok=True)
    (source / "python" / "linkup_sync" / "__pycache__" / "cli.cpython-313.pyc").write_bytes(b"\0" * 1000)
    (source / "python" / "linkup_sync.egg-info").mkdir()
    (source / "python" / "linkup_sync.egg-info" / "PKG-INFO").write_text("x")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    subprocess.run(
        ["make", "--no-print-directory", "build-LinkupSyncLayer", f"ARTIFACTS_DIR={artifacts}"],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=60,
    )
    built = sorted(str(p.relative_to(artifacts)) for p in artifacts.rglob("*") if p.is_file())
    assert built, "the build copied nothing"
    assert not [p for p in built if "__pycache__" in p or p.endswith(".pyc") or "egg-info" in p]
    expected = sorted(
        str(p.relative_to(REPO_ROOT / "layers" / "linkup_sync"))
        for p in (REPO_ROOT / "layers" / "linkup_sync" / "python" / "linkup_sync").rglob("*.py")
    )
    assert built == expected


# --- the command line accepts what the template accepts ----------------------------------------------


def test_version_rule_is_the_templates_allowed_pattern() -> None:
    pattern = load_template()["Parameters"]["LinkUpVersion"]["AllowedPattern"]
    assert pattern == VERSION_PATTERN
    for value in ("4.16.0", "4.17.12", "auto", "4.16", "4.16.0.1", "v4.16.0", "latest", "4"):
        template_ok = re.match(pattern, value) is not None
        try:
            Settings.from_env({**BASE, "LINK_UP_VERSION": value})
            cli_ok = True
        except ConfigError:
            cli_ok = False
        assert cli_ok == template_ok, value


def test_regions_are_the_templates_allowed_values() -> None:
    allowed = load_template()["Parameters"]["LinkUpRegion"]["AllowedValues"]
    assert sorted(allowed) == list(REGION_VALUES)
    for value in allowed:
        assert Settings.from_env({**BASE, "LINK_UP_REGION": value}).region == value.lower()
    for value in ("UK", "GB", "EU3", "Europe"):
        assert value not in allowed
        with pytest.raises(ConfigError, match="LINK_UP_REGION"):
            Settings.from_env({**BASE, "LINK_UP_REGION": value})
