"""Issue 13, unit side: the secret's keys, the region, home-server http, and hints without passwords."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from linkup_sync import settings
from linkup_sync.aws import NO_REGION, client, region_name
from linkup_sync.errors import ConfigError, SecretError
from linkup_sync.nightscout.url import normalize_nightscout_url
from linkup_sync.runtime import Dependencies, build_sink
from linkup_sync.secret_format import credentials_from_secret, set_secret_hint, unknown_key_problems
from linkup_sync.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BASE = {"STATE_TABLE_NAME": "t", "CREDENTIALS_SECRET_ID": "arn:secret"}
FLAT = {
    "LINK_UP_USERNAME": "fiona@example.invalid",
    "LINK_UP_PASSWORD": "hunter2hunter2",
    "NIGHTSCOUT_URL": "https://anna.example.com",
    "NIGHTSCOUT_API_TOKEN": "bridge-0123456789abcdef",
}
ANNA = "0227d7fa-ec29-4864-8882-2fc6471562c3"


def _problems(raw: object) -> list[str]:
    with pytest.raises(SecretError) as err:
        credentials_from_secret(raw, version="v", secret_id="arn:s")
    text = str(err.value)
    assert "hunter2hunter2" not in text and "fiona@example.invalid" not in text  # key names only
    return [p for p in err.value.problems if not p.startswith("Set it with")]


def test_a_misspelt_connection_is_an_error_with_did_you_mean() -> None:
    problems = _problems({**FLAT, "LINK_UP_CONNECTON": ANNA})
    assert problems == [
        "'LINK_UP_CONNECTON' in the secret is not a key linkup-sync knows. Did you mean LINK_UP_CONNECTION?"
    ]


def test_target_instead_of_targets_points_at_the_list_form() -> None:
    entry = {"LINK_UP_CONNECTION": ANNA, "NIGHTSCOUT_URL": "https://a.example.com", "NIGHTSCOUT_API_TOKEN": "x"}
    problems = _problems({"LINK_UP_USERNAME": FLAT["LINK_UP_USERNAME"], "LINK_UP_PASSWORD": "p", "TARGET": [entry]})
    assert problems == ["'TARGET' in the secret is not a key linkup-sync knows. Did you mean TARGETS?"]
    assert not any("NIGHTSCOUT_URL" in p for p in problems)


def test_lower_case_keys_are_named_as_such() -> None:
    problems = _problems({k.lower(): v for k, v in FLAT.items()})
    assert len(problems) == 4 and all("in capitals" in p for p in problems)
    assert not any("missing" in p for p in problems)


def test_unknown_keys_inside_targets_entries() -> None:
    entry = {"LINK_UP_CONNECTION": ANNA, "NIGHTSCOUT_URL": "https://a.example.com", "NIGHTSCOUT_API_TOKN": "x"}
    problems = _problems({"LINK_UP_USERNAME": FLAT["LINK_UP_USERNAME"], "LINK_UP_PASSWORD": "p", "TARGETS": [entry]})
    assert problems == [
        "'NIGHTSCOUT_API_TOKN' in TARGETS entry 1 is not a key linkup-sync knows. Did you mean NIGHTSCOUT_API_TOKEN?"
    ]
    problems = _problems({**FLAT, "TARGETS": [{**entry, "NIGHTSCOUT_API_TOKEN": "x"}]})
    assert any("belong(s) in each TARGETS entry" in p for p in problems)


def test_the_key_check_is_reusable() -> None:
    assert unknown_key_problems({"NIGHTSCOUT_ULR": 1, "OK": 2}, ["NIGHTSCOUT_URL", "OK"], "the account") == [
        "'NIGHTSCOUT_ULR' in the account is not a key linkup-sync knows. Did you mean NIGHTSCOUT_URL?"
    ]
    assert unknown_key_problems({"zzz": 1}, ["NIGHTSCOUT_URL"], "x") == [
        "'zzz' in x is not a key linkup-sync knows. Allowed: NIGHTSCOUT_URL."
    ]


def test_patient_ids_compare_case_insensitively() -> None:
    creds = credentials_from_secret({**FLAT, "LINK_UP_CONNECTION": ANNA.upper()}, version="v", secret_id=None)
    assert creds.targets[0].patient_id == ANNA
    assert Settings.from_env({**BASE, "LINK_UP_CONNECTION": ANNA.upper()}).connection == ANNA
    entry = {"NIGHTSCOUT_URL": "https://a.example.com", "NIGHTSCOUT_API_TOKEN": "x"}
    twice = {**FLAT, "TARGETS": [{**entry, "LINK_UP_CONNECTION": ANNA}, {**entry, "LINK_UP_CONNECTION": ANNA.upper()}]}
    del twice["NIGHTSCOUT_URL"], twice["NIGHTSCOUT_API_TOKEN"]
    assert any("repeats the same patient" in p for p in _problems(twice))


@pytest.mark.parametrize(
    "username", ["fiona follower@example.invalid", "fiona.example.invalid", "@example.invalid", "a@b"]
)
def test_username_must_be_an_email_address(username: str) -> None:
    problems = _problems({**FLAT, "LINK_UP_USERNAME": username})
    assert any("not an e-mail address" in p for p in problems)


def test_no_hint_puts_a_password_on_a_command_line() -> None:
    hint = set_secret_hint("arn:aws:secretsmanager:eu-west-1:1:secret:x")
    assert "make secret" in hint and "file://" in hint
    assert "--secret-string '" not in hint and "LINK_UP_PASSWORD" not in hint
    sources = "\n".join(p.read_text() for root in ("layers", "cli") for p in (ROOT / root).rglob("*.py"))
    assert not re.search(r"--secret-string\s+\S*\{", sources)
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:  # the README and the docs site
        assert not re.search(r"--secret-string\s+'?\{", page.read_text()), page.name


def test_aws_region_is_accepted_as_well_as_aws_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    assert region_name(env={"AWS_REGION": "eu-west-1"}) == "eu-west-1"
    assert region_name(env={"AWS_DEFAULT_REGION": "eu-west-2"}) == "eu-west-2"
    assert region_name("arn:aws:secretsmanager:ap-south-1:123456789012:secret:s", env={}) == "ap-south-1"
    assert region_name("linkup-sync-credentials", env={}) is None
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    # credentials from the environment: without them botocore would ask the instance metadata service (a socket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert client("dynamodb").meta.region_name == "eu-central-1"  # boto3 alone would not read AWS_REGION
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(ConfigError) as err:
        client("dynamodb")
    assert NO_REGION in err.value.problems


def test_run_handler_without_a_region_is_a_known_failure_not_an_unexpected_one(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # never reached: the region is missing first
        "STATE_TABLE_NAME": "t",
        "CREDENTIALS_SECRET_ID": "linkup-sync-credentials",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tools.run_handler"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "unexpected failure" not in output and "Traceback" not in output
    assert "AWS_REGION" in output and "No AWS region is set" in output


def test_home_server_http_only_with_the_opt_in_and_never_in_the_function() -> None:
    for url in ("http://nightscout:1337", "http://192.168.1.10:1337", "http://ns.local", "http://[fd00::1]:1337"):
        with pytest.raises(ValueError, match="NIGHTSCOUT_ALLOW_HTTP=true"):
            normalize_nightscout_url(url)
        assert normalize_nightscout_url(url, allow_http=True) == url
    assert normalize_nightscout_url("https://nightscout") == "https://nightscout"  # single label, with a scheme
    with pytest.raises(ValueError, match="not a web address"):
        normalize_nightscout_url("nightscout")  # a bare word is still an incomplete address
    with pytest.raises(ValueError, match="over the internet"):
        normalize_nightscout_url("http://ns.example.com", allow_http=True)
    assert Settings.from_env({"NIGHTSCOUT_ALLOW_HTTP": "true"}, need_aws=False).allow_http
    with pytest.raises(ConfigError, match="only for the command line"):
        Settings.from_env({**BASE, "NIGHTSCOUT_ALLOW_HTTP": "true"})  # the function's settings
    deps = Dependencies(settings=Settings.from_env(BASE), store=None, credentials=None)  # type: ignore[arg-type]
    target = credentials_from_secret({**FLAT, "NIGHTSCOUT_URL": "http://nightscout:1337"}, version="v", secret_id=None)
    with pytest.raises(ConfigError, match="http://"):
        build_sink(deps, target.targets[0], None, None)  # type: ignore[arg-type]


def test_pyproject_licence_is_an_spdx_string_so_setuptools_does_not_warn(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"  # the table form {text = ...} is deprecated
    for name in ("pyproject.toml", "README.md"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    package = tmp_path / "layers" / "linkup_sync" / "python" / "linkup_sync"
    package.mkdir(parents=True)
    init = ROOT / "layers" / "linkup_sync" / "python" / "linkup_sync" / "__init__.py"
    (package / "__init__.py").write_text(init.read_text())  # pyproject reads __version__ from it
    out = tmp_path / "meta"
    out.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "always",
            "-c",
            "import sys; from setuptools import build_meta; build_meta.prepare_metadata_for_build_wheel(sys.argv[1])",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "License-Expression: MIT" in next(out.glob("*.dist-info/METADATA")).read_text()
    assert "license" not in proc.stderr.lower() or "deprecat" not in proc.stderr.lower(), proc.stderr


def test_settings_module_keeps_one_definition_for_the_allowed_versions() -> None:
    assert re.match(settings.VERSION_PATTERN, "auto") and all(
        re.match(settings.VERSION_PATTERN, k) for k in settings.VERSION_KEYWORDS
    )
