"""Issue 21: LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT exists for local tests only: no template sets it, and the
worker deployed from hosted.yaml therefore refuses sites off the public internet."""

from __future__ import annotations

from typing import Any

import pytest

from linkup_sync.addresses import ALLOW_LOOPBACK_ENV, loopback_allowed
from tests.support.template import HOSTED_TEMPLATE_PATH, TEMPLATE_PATH, load_template


def _environments(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
            found[logical_id] = {**globals_env, **variables}
    return found


@pytest.mark.parametrize("path", [HOSTED_TEMPLATE_PATH, TEMPLATE_PATH], ids=["hosted.yaml", "template.yaml"])
def test_no_template_sets_the_tests_variable(path: Any) -> None:
    assert ALLOW_LOOPBACK_ENV not in path.read_text(encoding="utf-8")
    environments = _environments(load_template(path))
    assert environments  # the functions were found
    for variables in environments.values():
        assert ALLOW_LOOPBACK_ENV not in variables
        assert not loopback_allowed({k: str(v) for k, v in variables.items()})


def test_the_hosted_worker_is_among_the_functions_checked() -> None:
    environments = _environments(load_template(HOSTED_TEMPLATE_PATH))
    assert any("CREDENTIALS_KEY_ARN" in variables for variables in environments.values())
