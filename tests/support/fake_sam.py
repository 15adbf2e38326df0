"""A stand-in for the `sam` CLI that records every command line and deploys into moto.

    python -m tests.support.fake_sam <sam arguments>     (installed as an executable `sam` by `install`)

- `--version`: a version line. `build`: checks it runs in a checkout with template.yaml.
- `deploy --stack-name S --region R [--tags ...] [--parameter-overrides K=V ...]`: a CloudFormation stack in
  moto with the personal stack's secret, alert topic and state table (its key schema from template.yaml),
  and the outputs `setup` reads; the overrides are kept for the invoke.
- `remote invoke SyncFunction --stack-name S --region R --event-file F --output text`: the real handler,
  run here against moto with the function's environment as the template gives it for those parameters
  (the LibreLink Up simulator's address comes in as the LinkUpApiUrl override). Its logs go to stderr,
  its answer (or the error, as Lambda reports it) to stdout, as `sam remote invoke` does.

Each call appends {"argv": [...], "env": {...}} to $FAKE_SAM_LOG, so a test can check the exact command
lines and that no password or token reached a child process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def install(bin_dir: Path, log: Path) -> Path:
    """Write an executable `sam` into bin_dir that runs this module with this interpreter."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    sam = bin_dir / "sam"
    sam.write_text(
        "#!/bin/sh\n"
        f"FAKE_SAM_LOG={shlex.quote(str(log))} PYTHONPATH={shlex.quote(str(ROOT))} "
        f'exec {shlex.quote(sys.executable)} -m tests.support.fake_sam "$@"\n',
        encoding="utf-8",
    )
    sam.chmod(0o755)
    return sam


def recorded(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _overrides(argv: list[str]) -> dict[str, str]:
    if "--parameter-overrides" not in argv:
        return {}
    found: dict[str, str] = {}
    for token in argv[argv.index("--parameter-overrides") + 1 :]:
        if token.startswith("--"):
            break
        key, _, value = token.partition("=")
        if value.startswith('"') and value.endswith('"'):
            value = json.loads(value)
        found[key] = value
    return found


def _state(stack: str) -> Path:
    return Path(os.environ["FAKE_SAM_LOG"] + f".{stack}.json")


def deploy(argv: list[str]) -> int:
    import boto3
    from tools.local_stack import create_state_table

    stack, region = _option(argv, "--stack-name"), _option(argv, "--region")
    cfn = boto3.client("cloudformation", region_name=region)
    state = _state(stack)
    tags = []
    if "--tags" in argv:
        key, _, value = _option(argv, "--tags").partition("=")
        tags.append({"Key": key, "Value": value})
    if state.exists():  # an update: the same resources, the new tags (the version deployed)
        body = cfn.get_template(StackName=stack)["TemplateBody"]
        cfn.update_stack(StackName=stack, TemplateBody=body if isinstance(body, str) else json.dumps(body), Tags=tags)
    else:
        table = create_state_table(boto3.client("dynamodb", region_name=region), f"{stack}-StateTable-FAKE")
        # moto's CloudFormation has no AWS::SecretsManager::Secret: the secret is made beside it, empty,
        # as the template deploys it.
        secret_arn = boto3.client("secretsmanager", region_name=region).create_secret(Name=f"{stack}-credentials")[
            "ARN"
        ]
        template = {
            "Resources": {
                "AlertTopic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{stack}-alerts"}},
            },
            "Outputs": {
                "CredentialsSecretArn": {"Value": secret_arn},
                "AlertTopicArn": {"Value": {"Ref": "AlertTopic"}},
                "StateTableName": {"Value": table},
                "SyncFunctionName": {"Value": f"{stack}-SyncFunction-FAKE"},
            },
        }
        cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template), Tags=tags)
    state.write_text(json.dumps({"region": region, "overrides": _overrides(argv)}), encoding="utf-8")
    print(f"Successfully created/updated stack - {stack} in {region}")
    return 0


def remote_invoke(argv: list[str]) -> int:
    import boto3

    stack, region = _option(argv, "--stack-name"), _option(argv, "--region")
    saved = json.loads(_state(stack).read_text(encoding="utf-8"))
    stack_info = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack_info["Outputs"]}
    from tests.support.template import function_environment

    environment = function_environment(
        resources={
            "StateTable": outputs["StateTableName"],
            "CredentialsSecret": outputs["CredentialsSecretArn"],
            "AlertTopic": outputs["AlertTopicArn"],
        },
        parameters=saved["overrides"],
    )
    os.environ.update(environment)
    os.environ["AWS_REGION"] = region
    event = json.loads((Path.cwd() / _option(argv, "--event-file")).read_text(encoding="utf-8"))
    from linkup_sync.errors import LinkupSyncError

    with contextlib.redirect_stdout(sys.stderr):  # the function's log lines: stderr, as sam shows them
        from tools.run_handler import invoke

        try:
            answer: dict[str, Any] = invoke(event)
        except LinkupSyncError as exc:
            answer = {"errorMessage": exc.message, "errorType": type(exc).__name__}
    print(json.dumps(answer))
    return 0


def main(argv: list[str]) -> int:
    log = os.environ.get("FAKE_SAM_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as stream:
            stream.write(json.dumps({"argv": ["sam", *argv], "env": dict(os.environ)}) + "\n")
    if argv[:1] == ["--version"]:
        print("SAM CLI, version 1.170.0 (a test stand-in)")
        return 0
    if argv[:1] == ["build"]:
        if not (Path.cwd() / "template.yaml").exists():
            print("Error: template.yaml not found", file=sys.stderr)
            return 1
        print("Build Succeeded")
        return 0
    if argv[:1] == ["deploy"]:
        return deploy(argv)
    if argv[:2] == ["remote", "invoke"]:
        return remote_invoke(argv)
    print(f"fake sam: unknown command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "functions" / "sync"))
    raise SystemExit(main(sys.argv[1:]))
