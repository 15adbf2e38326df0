"""`linkup-sync setup` and `update`: the sam commands, the answers saved in samconfig.toml, the stack's
outputs, and the first run told in words.

Every child process gets an argv without a password or token, and an environment without them: the
secret is stored from this process (PutSecretValue), never handed to a program.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from linkup_sync import __version__

from .output import age_text

# template.yaml's parameters with their defaults (tests/template compares them with the template). Only
# an answer that differs from its default becomes a parameter override.
PARAMETER_DEFAULTS: dict[str, str] = {
    "LinkUpRegion": "EU",
    "LinkUpConnection": "",
    "LinkUpVersion": "auto",
    "LinkUpAutoAcceptTerms": "false",
    "LinkUpApiUrl": "https://api-{region}.libreview.io",
    "NightscoutApiV3": "false",
    "NightscoutSensorStart": "true",
    "NightscoutAnnounce": "true",
    "NightscoutDeviceName": "linkup-sync",
    "TrendArrows": "derived",
    "CreateDashboard": "false",
    "ScheduleRate": "5 minutes",
    "MemorySize": "256",
    "PowertoolsLayerArn": "/aws/service/powertools/python/arm64/python3.13/3.37.0",
    "LogLevel": "INFO",
    "LogRetentionDays": "30",
    "AlarmEmail": "",
    "StaleAfterMinutes": "30",
    "FailedRunsToAlarm": "3",
    "FailedRunsWindow": "6",
}
# The function's settings (environment variables) and the parameters they come from (template.yaml's
# SyncFunction environment): a setting given to `setup` is deployed as that parameter.
SETTING_PARAMETERS: dict[str, str] = {
    "LINK_UP_REGION": "LinkUpRegion",
    "LINK_UP_VERSION": "LinkUpVersion",
    "LINK_UP_API_URL": "LinkUpApiUrl",
    "NIGHTSCOUT_API_V3": "NightscoutApiV3",
    "NIGHTSCOUT_SENSOR_START": "NightscoutSensorStart",
    "NIGHTSCOUT_ANNOUNCE": "NightscoutAnnounce",
    "NIGHTSCOUT_DEVICE_NAME": "NightscoutDeviceName",
    "TREND_ARROWS": "TrendArrows",
    "STALE_AFTER_MINUTES": "StaleAfterMinutes",
    "LINK_UP_AUTO_ACCEPT_TERMS": "LinkUpAutoAcceptTerms",
    "POWERTOOLS_LOG_LEVEL": "LogLevel",
}
SAVED_MARK = "# saved by linkup-sync setup: make deploy and make update use these answers"
DEPLOY_SECTION = "[default.deploy.parameters]"
# Never in a child process's environment: sam needs none of them.
SECRET_VARIABLES = ("LINK_UP_PASSWORD", "NIGHTSCOUT_API_TOKEN", "TARGETS")


def given_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """Parameters given as environment variables (by the parameter's name or the setting's), when not
    their default."""
    found: dict[str, str] = {}
    for setting, parameter in SETTING_PARAMETERS.items():
        value = env.get(setting, "").strip()
        if value:
            found[parameter] = value
    for parameter in PARAMETER_DEFAULTS:
        value = env.get(parameter, "").strip()
        if value:
            found[parameter] = value
    return {k: v for k, v in found.items() if v != PARAMETER_DEFAULTS[k]}


def override_args(overrides: Mapping[str, str]) -> list[str]:
    """`Key=Value` tokens for --parameter-overrides, quoted where sam would split them."""
    tokens = []
    for key in sorted(overrides):
        value = overrides[key]
        if re.search(r"[\s\"'=,]", value):
            value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        tokens.append(f"{key}={value}")
    return tokens


def deploy_command(
    sam: str, stack: str, region: str, overrides: Mapping[str, str], version: str = __version__
) -> list[str]:
    """The deploy, tagged with the version it deploys (`update` reads the tag to tell what changed)."""
    argv = [sam, "deploy", "--stack-name", stack, "--region", region, "--no-confirm-changeset"]
    argv += ["--tags", f"linkup-sync:version={version}"]
    if overrides:
        argv += ["--parameter-overrides", *override_args(overrides)]
    return argv


def invoke_command(sam: str, stack: str, region: str) -> list[str]:
    return [
        sam, "remote", "invoke", "SyncFunction", "--stack-name", stack, "--region", region,
        "--event-file", "events/scheduled.json", "--output", "text",
    ]  # fmt: skip


# --- samconfig.toml -----------------------------------------------------------------------------------


@dataclass
class Saved:
    stack: str
    region: str
    overrides: dict[str, str]


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def save_answers(path: Path, saved: Saved) -> None:
    """Write the answers into samconfig.toml's [default.deploy.parameters], so `make deploy` (and `make
    update`) deploy them again without a question. Other sections and keys stay as they are."""
    text = path.read_text(encoding="utf-8") if path.exists() else "version = 0.1\n"
    values = {
        "stack_name": _toml_string(saved.stack),
        "region": _toml_string(saved.region),
        "confirm_changeset": "false",
        "parameter_overrides": _toml_string(" ".join(override_args(saved.overrides))),
    }
    lines = text.splitlines()
    try:
        start = lines.index(DEPLOY_SECTION)
    except ValueError:
        lines += ["", DEPLOY_SECTION, 'capabilities = "CAPABILITY_IAM"', "resolve_s3 = true"]
        start = len(lines) - 3
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    body = [ln for ln in lines[start + 1 : end] if ln.strip() != SAVED_MARK and ln.split("=")[0].strip() not in values]
    while body and not body[-1].strip():
        body.pop()
    body += [SAVED_MARK, *(f"{k} = {v}" for k, v in values.items()), ""]
    lines[start + 1 : end] = body
    path.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")


def _parse_overrides(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', text):
        value = match.group(2)
        if value.startswith('"'):
            value = json.loads(value)
        found[match.group(1)] = value
    return found


def load_answers(path: Path) -> Saved | None:
    """The answers a former `setup` saved, or None."""
    if not path.exists() or SAVED_MARK not in path.read_text(encoding="utf-8"):
        return None
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    deploy = config.get("default", {}).get("deploy", {}).get("parameters", {})
    stack, region = deploy.get("stack_name"), deploy.get("region")
    if not isinstance(stack, str) or not isinstance(region, str):
        return None
    return Saved(stack, region, _parse_overrides(str(deploy.get("parameter_overrides", ""))))


# --- running sam --------------------------------------------------------------------------------------


Runner = Callable[[Sequence[str], Path, Mapping[str, str], bool], "tuple[int, str]"]


def run_program(argv: Sequence[str], cwd: Path, env: Mapping[str, str], capture: bool) -> tuple[int, str]:
    """Run a program; its output goes to the terminal unless captured."""
    result = subprocess.run(  # noqa: S603 - argv built here, never from a shell string
        list(argv), cwd=cwd, env=dict(env), check=False, text=True, stdout=subprocess.PIPE if capture else None
    )
    return result.returncode, result.stdout or ""


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in SECRET_VARIABLES}


# --- the stack ---------------------------------------------------------------------------------------


def stack_outputs(stack: str, region: str) -> dict[str, str] | None:
    """The stack's outputs, or None when there is no such stack in the region."""
    from botocore.exceptions import ClientError

    from linkup_sync.aws import client

    try:
        reply = client("cloudformation", region=region, patient=True).describe_stacks(StackName=stack)
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    outputs = reply["Stacks"][0].get("Outputs", [])
    return {str(o["OutputKey"]): str(o["OutputValue"]) for o in outputs}


def stack_version(stack: str, region: str) -> str | None:
    """The linkup-sync version the stack was deployed with (its tag), if it says."""
    from linkup_sync.aws import client

    reply = client("cloudformation", region=region, patient=True).describe_stacks(StackName=stack)
    for tag in reply["Stacks"][0].get("Tags", []):
        if tag.get("Key") == "linkup-sync:version":
            return str(tag.get("Value"))
    return None


def read_secret(secret_arn: str, region: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    from linkup_sync.aws import client

    try:
        text = client("secretsmanager", region=region, patient=True).get_secret_value(SecretId=secret_arn)
    except ClientError:
        return None
    try:
        value = json.loads(text.get("SecretString") or "")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def store_secret(secret_arn: str, region: str, value: Mapping[str, Any]) -> None:
    from linkup_sync.aws import client

    client("secretsmanager", region=region, patient=True).put_secret_value(
        SecretId=secret_arn, SecretString=json.dumps(value)
    )


# --- the first run, in words -------------------------------------------------------------------------


def run_result(output: str) -> dict[str, Any] | None:
    """The function's answer from `sam remote invoke --output text`: the last JSON object printed."""
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def describe_run(result: Mapping[str, Any], sites: Sequence[str], out: TextIO) -> bool:
    """Print what the run did; False when it failed or was skipped."""
    if "errorMessage" in result:
        out.write(f"✘ The first run failed: {result['errorMessage']}\n")
        return False
    if result.get("skipped"):
        out.write(f"✘ The first run was skipped: {result.get('skipped_message') or result['skipped']}\n")
        return False
    uploaded = int(result.get("uploaded") or 0)
    history = int(result.get("gap_filled") or 0)
    if uploaded:
        text = f"uploaded {uploaded} reading{'s' if uploaded != 1 else ''}"
        if history:
            text += f", {history} of them from the last 12 hours"
    else:
        text = "nothing new to upload (Nightscout already had the readings)"
    age = result.get("newest_reading_age_s")
    if isinstance(age, (int, float)):
        text += f"; newest {age_text(float(age))} old"
    out.write(f"✔ The first run {text}.\n")
    for site in sites:
        out.write(f"  See them at {site}\n")
    return True
