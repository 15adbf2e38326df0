"""`make sandbox`: everything the README's command-line examples need, on 127.0.0.1, until Ctrl-C.

Starts the LibreLink Up simulator (one simulated follower account following one person), the
Nightscout stand-in (with an access token whose role may upload readings and Sensor Start treatments)
and a moto server in place of AWS, with the stack's state table (from template.yaml) and a filled-in
credentials secret, and for the hosted stack's operator its table (from hosted.yaml), a KMS key and an
account's JSON for `linkup-sync accounts`. All of them run on the real clock, so the readings are "now". It prints the
`export ...` lines to paste into a second terminal and the commands to try there, then waits in the
foreground. Ctrl-C (or SIGTERM) stops everything and frees the ports.

Nothing here talks to Abbott, a real Nightscout or AWS. Development tooling only (never deployed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TextIO

from tools.local_stack import (
    EMAIL,
    HOSTED_TEMPLATE_PATH,
    LOCAL_REGION,
    PASSWORD,
    ROOT,
    aws_environment,
    create_state_table,
    moto_server,
)
from tools.simulators.librelinkup import LinkUpSimulator
from tools.simulators.nightscout import NightscoutStandIn

STACK = "linkup-sync-sandbox"
# The role the README recommends for API v1 with Sensor Start (see "Nightscout token").
ROLE_PERMISSIONS = ["api:entries:create", "api:entries:read", "api:treatments:create", "api:treatments:read"]
READY_LINE = "sandbox ready: paste the export lines above into a second terminal"


def _command(name: str) -> str:
    """The command as the person can run it: the venv's script next to this Python, else the bare name."""
    script = Path(sys.executable).parent / name
    return str(script) if script.exists() else name


def exports(variables: dict[str, str]) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]


@contextlib.contextmanager
def sandbox(state_dir: Path) -> Iterator[dict[str, str]]:
    """The running sandbox; yields the environment a second terminal needs."""
    clock = time.time
    llu = LinkUpSimulator(clock).start()
    ns = NightscoutStandIn(clock).start()
    try:
        llu.add_account(EMAIL, PASSWORD, home_region="eu")
        llu.add_patient(EMAIL, first_name="Pat", last_name="Example")
        ns.add_role("cgm-bridge", ROLE_PERMISSIONS)
        token = ns.add_subject("bridge", ["cgm-bridge"])
        with moto_server() as endpoint, aws_environment(endpoint) as aws:
            import boto3

            table = create_state_table(boto3.client("dynamodb", endpoint_url=endpoint), f"{STACK}-state")
            secrets = boto3.client("secretsmanager", endpoint_url=endpoint)
            secret_arn = secrets.create_secret(Name=f"{STACK}-credentials")["ARN"]
            credentials = {
                "LINK_UP_USERNAME": EMAIL,
                "LINK_UP_PASSWORD": PASSWORD,
                "NIGHTSCOUT_URL": ns.base_url,
                "NIGHTSCOUT_API_TOKEN": token,
            }
            secrets.put_secret_value(SecretId=secret_arn, SecretString=json.dumps(credentials))
            # The hosted stack's operator (issue 23, finding 7): its table (from hosted.yaml), a KMS key,
            # and an account's JSON to try `linkup-sync accounts add` with.
            hosted_table = create_state_table(
                boto3.client("dynamodb", endpoint_url=endpoint), f"{STACK}-hosted-state", HOSTED_TEMPLATE_PATH
            )
            key_arn = boto3.client("kms", endpoint_url=endpoint).create_key(Description="CredentialsKey")[
                "KeyMetadata"
            ]["Arn"]
            account = state_dir / "account.json"
            account.write_text(
                json.dumps(
                    {
                        "LINK_UP_USERNAME": EMAIL,
                        "LINK_UP_PASSWORD": PASSWORD,
                        # the sandbox's own Nightscout: allowed for a hosted account only because the
                        # sandbox exports LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT (a test setting)
                        "NIGHTSCOUT_URL": ns.base_url,
                        "NIGHTSCOUT_API_TOKEN": token,
                    }
                ),
                encoding="utf-8",
            )
            account.chmod(0o600)
            yield {
                **credentials,
                "LINK_UP_REGION": "EU",
                "LINK_UP_API_URL": llu.url_template,
                # the deployed stack's names, for --secret-id/--table and python -m tools.run_handler
                "STATE_TABLE_NAME": table,
                "CREDENTIALS_SECRET_ID": secret_arn,
                # moto instead of AWS, with dummy credentials: nothing can reach a real account
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": aws["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": aws["AWS_SECRET_ACCESS_KEY"],
                "AWS_REGION": LOCAL_REGION,
                "AWS_DEFAULT_REGION": LOCAL_REGION,  # the AWS CLI v1 reads only this one
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "LINKUP_SANDBOX_STATE": str(state_dir / "state.json"),
                # the hosted stack's outputs StateTableName and CredentialsKeyArn, for `accounts`
                "HOSTED_STATE_TABLE_NAME": hosted_table,
                "HOSTED_KEY_ID": key_arn,
                "LINKUP_SANDBOX_ACCOUNT": str(account),
                # the sandbox's Nightscout is on 127.0.0.1, which a hosted account may name only in tests
                "LINKUP_SYNC_ALLOW_LOOPBACK_NIGHTSCOUT": "true",
            }
    finally:
        llu.stop()
        ns.stop()


def suggested_commands() -> list[str]:
    cli = _command("linkup-sync")
    python = _command("python")
    state = '--state "$LINKUP_SANDBOX_STATE"'  # a file of its own: the sandbox leaves ~/.linkup-sync alone
    return [
        f"{cli} doctor {state}",
        f"{cli} sync --once --dry-run {state}",
        f"{cli} sync --once {state}",
        f'{cli} doctor --secret-id "$CREDENTIALS_SECRET_ID" --table "$STATE_TABLE_NAME"',
        f'{cli} sync --once --secret-id "$CREDENTIALS_SECRET_ID" --table "$STATE_TABLE_NAME"',
        f"(cd {shlex.quote(str(ROOT))} && {python} -m tools.run_handler)",
        "# the hosted stack, as its operator:",
        f'{cli} accounts add --table "$HOSTED_STATE_TABLE_NAME" --key-id "$HOSTED_KEY_ID" < "$LINKUP_SANDBOX_ACCOUNT"',
        f'{cli} accounts list --table "$HOSTED_STATE_TABLE_NAME"',
        f'{cli} accounts show --table "$HOSTED_STATE_TABLE_NAME" {EMAIL}',
    ]


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    out = out or sys.stdout
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with tempfile.TemporaryDirectory(prefix="linkup-sync-sandbox-") as state_dir, sandbox(Path(state_dir)) as env:
            lines = [
                "linkup-sync sandbox: LibreLink Up simulator, Nightscout stand-in and moto (in place of AWS) on "
                "127.0.0.1.",
                "A simulated follower account; no real account, password or AWS is used.",
                "",
                "# paste into a second terminal:",
                "unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION",
                *exports(env),
                "",
                "# then try:",
                *suggested_commands(),
                "",
                READY_LINE + "; Ctrl-C here stops everything.",
            ]
            out.write("\n".join(lines) + "\n")
            out.flush()
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.write("sandbox stopped: the simulators and moto are shut down.\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
