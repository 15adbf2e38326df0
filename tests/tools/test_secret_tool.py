"""`make secret` (tools/secret.py, issue 13): the function's rules before storing, and a clear word when
the stack does not exist. Against a moto server on 127.0.0.1."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from tools.local_stack import aws_environment, moto_server

from tools import secret as tool

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "LINK_UP_USERNAME": "fiona.follower@example.invalid",
    "LINK_UP_PASSWORD": "correct horse battery staple",
    "NIGHTSCOUT_URL": "my-site.example.com/api/v1",
    "NIGHTSCOUT_API_TOKEN": "bridge-0123456789abcdef",
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url, aws_environment(url):
        yield url


def _run(env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = tool.main(env, err=err, out=out)
    return code, out.getvalue(), err.getvalue()


def _secret(endpoint: str, name: str) -> str:
    return str(boto3.client("secretsmanager", endpoint_url=endpoint).create_secret(Name=name)["ARN"])


def _value(endpoint: str, arn: str) -> str | None:
    sm = boto3.client("secretsmanager", endpoint_url=endpoint)
    try:
        return str(sm.get_secret_value(SecretId=arn)["SecretString"])
    except sm.exceptions.ResourceNotFoundException:
        return None


def test_values_are_checked_with_the_functions_rules_and_nothing_is_stored(endpoint: str) -> None:
    arn = _secret(endpoint, "checked")
    bad = {
        **GOOD,
        "LINK_UP_USERNAME": "fiona follower",  # not an e-mail address
        "NIGHTSCOUT_URL": "http://my-site.example.com",  # the function refuses http
        "SECRET_ID": arn,
    }
    code, _, err = _run(bad)
    assert code == 1 and "nothing was stored" in err
    assert "LINK_UP_USERNAME in the secret is not an e-mail address" in err
    assert "NIGHTSCOUT_URL starts with http://" in err
    assert GOOD["LINK_UP_PASSWORD"] not in err and "fiona follower" not in err
    assert _value(endpoint, arn) is None
    sha1 = "14c0629b7d30e4d12e3ab50120566664497754fa"
    code, _, err = _run({**GOOD, "NIGHTSCOUT_API_TOKEN": sha1, "NIGHTSCOUT_API_V3": "true", "SECRET_ID": arn})
    assert code == 1 and "looks like a SHA-1" in err and _value(endpoint, arn) is None


def test_good_values_are_stored_in_the_stacks_secret(endpoint: str) -> None:
    arn = _secret(endpoint, "from-the-stack")
    cfn = boto3.client("cloudformation", endpoint_url=endpoint)
    body = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"CredentialsSecretArn": {"Value": arn}},
    }
    cfn.create_stack(StackName="my-sync", TemplateBody=json.dumps(body))
    code, out, err = _run({**GOOD, "STACK_NAME": "my-sync"})
    assert code == 0, err
    assert arn in out and GOOD["LINK_UP_PASSWORD"] not in out
    assert json.loads(_value(endpoint, arn) or "{}") == GOOD


def test_a_missing_stack_is_named_with_the_fix(endpoint: str) -> None:
    code, _, err = _run({**GOOD, "STACK_NAME": "no-such-stack"})
    assert code == 1
    assert "there is no stack 'no-such-stack' in us-east-1" in err
    assert "make deploy" in err and "SECRET_ID" in err and "Traceback" not in err


def test_make_secret_runs_the_checking_tool() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nsecret:", 1)[1].split("\n\n", 1)[0]
    assert "-m tools.secret" in recipe and "put-secret-value" not in recipe


def test_a_secret_with_several_people_is_not_overwritten_with_one(endpoint: str) -> None:
    """Issue 23, finding 5: `make secret` writes the flat form; over a TARGETS secret it would drop people."""
    arn = _secret(endpoint, "targets")
    targets = {
        "LINK_UP_USERNAME": GOOD["LINK_UP_USERNAME"],
        "LINK_UP_PASSWORD": GOOD["LINK_UP_PASSWORD"],
        "TARGETS": [
            {"LINK_UP_CONNECTION": "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13", "NIGHTSCOUT_URL": "https://a.example.org",
             "NIGHTSCOUT_API_TOKEN": "a-0123456789abcdef"},
            {"LINK_UP_CONNECTION": "0d3c6b7a-5e4f-4a1b-8c9d-7e6f5a4b3c2d", "NIGHTSCOUT_URL": "https://b.example.org",
             "NIGHTSCOUT_API_TOKEN": "b-0123456789abcdef"},
        ],
    }  # fmt: skip
    boto3.client("secretsmanager", endpoint_url=endpoint).put_secret_value(
        SecretId=arn, SecretString=json.dumps(targets)
    )
    code, _, err = _run({**GOOD, "SECRET_ID": arn})
    assert code == 1 and "several people" in err and "make setup" in err and "Nothing was stored" in err
    assert json.loads(_value(endpoint, arn) or "{}") == targets


def test_the_person_chosen_and_api_v3_are_kept_when_the_password_is_changed(endpoint: str) -> None:
    """make setup stores the person it followed (LINK_UP_CONNECTION) in the secret: a new password from
    make secret must not drop it, or the bridge would follow the account's first person instead."""
    arn = _secret(endpoint, "chosen")
    chosen = {**GOOD, "LINK_UP_CONNECTION": "0d3c6b7a-5e4f-4a1b-8c9d-7e6f5a4b3c2d", "NIGHTSCOUT_API_V3": "true"}
    boto3.client("secretsmanager", endpoint_url=endpoint).put_secret_value(
        SecretId=arn, SecretString=json.dumps(chosen)
    )
    code, _, err = _run(
        {
            **GOOD,
            "LINK_UP_PASSWORD": "a new password",
            "NIGHTSCOUT_API_TOKEN": "bridge-0123456789abcdef",
            "SECRET_ID": arn,
        }
    )
    assert code == 0, err
    stored = json.loads(_value(endpoint, arn) or "{}")
    assert stored["LINK_UP_PASSWORD"] == "a new password"
    assert stored["LINK_UP_CONNECTION"] == chosen["LINK_UP_CONNECTION"] and stored["NIGHTSCOUT_API_V3"] == "true"

    # The kept API v3 still needs an access token: a plain API_SECRET is refused and nothing is stored.
    code, _, err = _run({**GOOD, "NIGHTSCOUT_API_TOKEN": "a plain api secret", "SECRET_ID": arn})
    assert code == 1 and "nothing was stored" in err
    assert json.loads(_value(endpoint, arn) or "{}")["LINK_UP_PASSWORD"] == "a new password"
