"""A secret filled in the Secrets Manager console works exactly like one written by `make secret` (issue #11).

After a deploy from the Serverless Application Repository, a person pastes the stack output
SecretJsonShape, with their values, as the secret's plaintext. Here both ways fill the secret of a
fresh stack (moto), then the real handler runs once against the simulators: the runs must agree.
`make secret` runs tools/secret.py (tests/tools/test_secret_tool.py checks the recipe), here against moto.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tools.local_stack import aws_environment

from tests.integration.checks import assert_clean_series, ns_instants
from tests.integration.harness import EMAIL, PASSWORD, Harness
from tests.support.template import load_template
from tools import secret as secret_tool

# Fields of the run summary that must be the same whichever way the secret was written.
COMPARED = ("uploaded", "gap_filled", "logins", "linkup_requests", "nightscout_requests", "skipped")


@pytest.fixture
def make_harness(aws_env: str) -> Iterator[Any]:
    from aws_lambda_powertools.metrics.provider import cold_start

    from linkup_sync.observability import metrics

    started: list[Harness] = []

    def start() -> Harness:
        h = Harness(aws_env)
        cold_start.is_cold_start = True
        started.append(h)
        h.llu.add_patient(EMAIL)
        h.provision()
        return h

    yield start
    metrics().clear_metrics()
    for h in started:
        h.stop()


def _store(h: Harness, secret_string: str) -> None:
    sm = boto3.client("secretsmanager", endpoint_url=h.moto_endpoint)
    sm.put_secret_value(SecretId=h.secret_arn, SecretString=secret_string)
    h.new_container()


def _values(h: Harness) -> dict[str, str]:
    return {
        "LINK_UP_USERNAME": EMAIL,
        "LINK_UP_PASSWORD": PASSWORD,
        "NIGHTSCOUT_URL": h.ns.base_url,
        "NIGHTSCOUT_API_TOKEN": h.ns_token,
    }


def _written_by_make_secret(h: Harness) -> str:
    """Run `make secret`'s tool with the values in the environment; return what it stored in the secret."""
    env = {**os.environ, **_values(h), "SECRET_ID": h.secret_arn}
    out, err = io.StringIO(), io.StringIO()
    with aws_environment(h.moto_endpoint):
        code = secret_tool.main(env, err=err, out=out)
    assert code == 0, out.getvalue() + err.getvalue()
    for value in _values(h).values():  # nothing of the secret is shown
        assert value not in out.getvalue() + err.getvalue()
    sm = boto3.client("secretsmanager", endpoint_url=h.moto_endpoint)
    return str(sm.get_secret_value(SecretId=h.secret_arn)["SecretString"])


def _pasted_in_the_console(h: Harness) -> str:
    """The stack output SecretJsonShape with each placeholder replaced, as a person edits it."""
    text: str = load_template()["Outputs"]["SecretJsonShape"]["Value"]
    for key, placeholder in json.loads(text).items():
        quoted = json.dumps(placeholder)
        assert text.count(quoted) == 1, f"{key}: the placeholder {quoted} is not unique"
        text = text.replace(quoted, json.dumps(_values(h)[key]))
    return text


def test_first_run_after_a_console_filled_secret_is_the_run_after_make_secret(
    make_harness: Any, tmp_path: Path
) -> None:
    by_make, by_console = make_harness(), make_harness()
    made = _written_by_make_secret(by_make)
    pasted = _pasted_in_the_console(by_console)
    assert json.loads(pasted).keys() == json.loads(made).keys()
    _store(by_make, made)
    _store(by_console, pasted)

    results = {}
    for name, h in (("make secret", by_make), ("console", by_console)):
        result = h.run()
        assert result["uploaded"] > 100, f"{name}: the first run fills the 12-hour window"
        assert h.llu.logins == 1, name
        assert_clean_series(h.llu, h.ns)
        results[name] = {k: result.get(k) for k in COMPARED}
        results[name]["in_nightscout"] = len(ns_instants(h.ns))
    assert results["console"] == results["make secret"]
