"""`make secret`: store the credentials secret from environment variables, checked first.

Reads LINK_UP_USERNAME, LINK_UP_PASSWORD, NIGHTSCOUT_URL and NIGHTSCOUT_API_TOKEN from the environment
(never from the command line, never echoed), checks them with the function's own rules (the secret's
keys and forms, the e-mail address, the Nightscout address, and with NIGHTSCOUT_API_V3=true the access
token), and only then writes them with one PutSecretValue. The secret is SECRET_ID, or the output
CredentialsSecretArn of the stack STACK_NAME (default linkup-sync). Exits 1 with a message naming the
cause and the fix, and stores nothing, when anything is wrong.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from linkup_sync.aws import client, region_name
from linkup_sync.config import TRUE_WORDS
from linkup_sync.errors import ConfigError
from linkup_sync.nightscout.url import normalize_nightscout_url
from linkup_sync.nightscout.v3 import is_access_token, needs_subject_text
from linkup_sync.secret_format import FLAT_SECRET_KEYS, SECRET_KEYS, credentials_from_secret

PROG = "make secret"


class SecretToolError(Exception):
    """A problem the person can fix; the message says how."""


def check_values(env: Mapping[str, str]) -> dict[str, str]:
    """The secret's JSON object, after the function's checks; raises SecretToolError listing every problem."""
    missing = [key for key in SECRET_KEYS if not env.get(key, "").strip()]
    if missing:
        raise SecretToolError("set " + ", ".join(missing) + " in the environment first (see the README, Deploy).")
    values = {key: env[key] for key in SECRET_KEYS}
    problems: list[str] = []
    try:
        credentials_from_secret(values, version="make-secret", secret_id=None)
    except ConfigError as exc:
        problems += [p for p in exc.problems if not p.startswith("Set it with")]
    try:
        normalize_nightscout_url(values["NIGHTSCOUT_URL"])  # the function's rule: https://, no http opt-in
    except ValueError as exc:
        problems.append(str(exc))
    api_v3 = env.get("NIGHTSCOUT_API_V3", "").strip().lower() in TRUE_WORDS
    if api_v3 and not is_access_token(values["NIGHTSCOUT_API_TOKEN"]):
        problems.append(needs_subject_text(values["NIGHTSCOUT_API_TOKEN"]) + ".")
    if problems:
        raise SecretToolError(
            "nothing was stored; fix these first:\n" + "\n".join(f"  - {p}" for p in dict.fromkeys(problems))
        )
    return values


def secret_id(env: Mapping[str, str], cloudformation: Any = None) -> str:
    """SECRET_ID, or the stack's CredentialsSecretArn output; a missing stack is said as such."""
    given = env.get("SECRET_ID", "").strip()
    if given:
        return given
    from botocore.exceptions import ClientError

    stack = env.get("STACK_NAME", "").strip() or "linkup-sync"
    region = region_name() or "the default region of your AWS profile"
    cfn = cloudformation or client("cloudformation")
    try:
        reply = cfn.describe_stacks(StackName=stack)
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise SecretToolError(
                f"there is no stack '{stack}' in {region}. Deploy it first (make deploy), or set STACK_NAME to the "
                "stack's name and AWS_REGION to its region, or set SECRET_ID to the stack output "
                "CredentialsSecretArn."
            ) from None
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in reply["Stacks"][0].get("Outputs", [])}
    arn = outputs.get("CredentialsSecretArn", "")
    if not arn:
        raise SecretToolError(
            f"the stack '{stack}' has no output CredentialsSecretArn (is it a linkup-sync stack, and is its "
            "deploy finished?). Set SECRET_ID to the secret's ARN."
        )
    return str(arn)


# Keys of a one-person secret that this tool does not ask for: the person chosen (make setup stores it
# here) and API v3. They are kept, so a new password never switches the bridge to another person.
KEPT_KEYS = tuple(key for key in FLAT_SECRET_KEYS if key not in SECRET_KEYS)


def refuse_to_drop_people(secrets: Any, sid: str) -> dict[str, str]:
    """What of the current secret must be kept: its LINK_UP_CONNECTION and NIGHTSCOUT_API_V3.

    The flat form this tool writes holds one person: a secret in the TARGETS form (several people)
    would lose all but one. Such a secret is changed with `make setup` (issue 23, finding 5)."""
    from botocore.exceptions import ClientError

    try:
        current = secrets.get_secret_value(SecretId=sid).get("SecretString") or ""
    except ClientError:
        return {}  # no value yet (or not readable here): nothing to lose
    try:
        value = json.loads(current)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    if "TARGETS" in value:
        raise SecretToolError(
            "the secret holds several people (the TARGETS form); make secret writes one person only and "
            "would drop the others. Nothing was stored. Change it with `make setup` (it keeps every person), "
            "or edit the JSON as the README shows under Several people."
        )
    return {key: str(value[key]) for key in KEPT_KEYS if isinstance(value.get(key), str | bool)}


def main(env: Mapping[str, str] | None = None, err: TextIO | None = None, out: TextIO | None = None) -> int:
    environ = os.environ if env is None else env
    err, out = err or sys.stderr, out or sys.stdout
    try:
        values = check_values(environ)
        sid = secret_id(environ)
        secrets = client("secretsmanager", secret_id=sid)
        kept = refuse_to_drop_people(secrets, sid)
        given = {key: environ[key].strip() for key in KEPT_KEYS if environ.get(key, "").strip()}
        stored = {**kept, **given, **values}
        if str(stored.get("NIGHTSCOUT_API_V3", "")).strip().lower() in TRUE_WORDS:
            check_values({**environ, "NIGHTSCOUT_API_V3": "true"})  # the secret's API v3 needs an access token
        secrets.put_secret_value(SecretId=sid, SecretString=json.dumps(stored))
    except SecretToolError as exc:
        err.write(f"{PROG}: {exc}\n")
        return 1
    except ConfigError as exc:
        err.write(f"{PROG}: {exc.message}\n")
        return 1
    except Exception as exc:
        if type(exc).__module__.startswith(("botocore", "boto3")):
            err.write(f"{PROG}: AWS could not be used: {exc}\n")
            return 1
        raise
    out.write(f"Stored the credentials in {sid} (the values are not shown).\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
