"""A secret filled in the Secrets Manager console works exactly like one written by `make secret` (issue #11).

After a deploy from the Serverless Application Repository, a person pastes the stack output
SecretJsonShape, with their values, as the secret's plaintext. Here both ways fill the secret of a
fresh stack (moto), then the real handler runs once against the simulators: the runs must agree.
`make secret` runs for real; only its `aws` is a stand-in that records what the AWS CLI would store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration.checks import assert_clean_series, ns_instants
from tests.integration.harness import EMAIL, PASSWORD, Harness
from tests.support.template import REPO_ROOT, load_template

# What `aws secretsmanager put-secret-value --secret-string file:///dev/stdin` stores: the bytes it
# reads from stdin, unchanged. The stand-in records them and its arguments.
AWS_STAND_IN = """\
import json, sys
from pathlib import Path
record = Path(__file__).with_name("put-secret-value.json")
record.write_text(json.dumps({"argv": sys.argv[1:], "stdin": sys.stdin.read()}))
print("version-1")
"""

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


def _written_by_make_secret(h: Harness, tmp_path: Path) -> str:
    """Run `make secret` with the values in the environment; return what the AWS CLI would store."""
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    aws = stand_in / "aws"
    aws.write_text(f"#!{sys.executable}\n{AWS_STAND_IN}")
    aws.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    env.update(_values(h))
    env.update({"SECRET_ID": h.secret_arn, "PATH": f"{stand_in}{os.pathsep}{env.get('PATH', '')}"})
    proc = subprocess.run(
        ["make", "-s", "-f", str(REPO_ROOT / "Makefile"), "secret", f"PYTHON={sys.executable}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for value in _values(h).values():  # nothing of the secret is shown
        assert value not in proc.stdout + proc.stderr
    record = json.loads((stand_in / "put-secret-value.json").read_text())
    assert record["argv"][:2] == ["secretsmanager", "put-secret-value"]
    assert record["argv"][record["argv"].index("--secret-id") + 1] == h.secret_arn
    assert record["argv"][record["argv"].index("--secret-string") + 1] == "file:///dev/stdin"
    stdin: str = record["stdin"]
    return stdin


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
    made = _written_by_make_secret(by_make, tmp_path)
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
