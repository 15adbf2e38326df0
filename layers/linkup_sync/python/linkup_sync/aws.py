"""boto3 clients with the region found the way people expect it.

boto3 itself reads only AWS_DEFAULT_REGION (and the profile), while the AWS CLI docs, Lambda and most
guides say AWS_REGION. Both are accepted here, and a secret's ARN names its own region. Without any,
a clear ConfigError replaces botocore's "You must specify a region" (which would otherwise count as an
unexpected failure).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

_ARN_REGION = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):")

NO_REGION = (
    "No AWS region is set: set AWS_REGION (or AWS_DEFAULT_REGION) to the region of the stack, e.g. "
    "export AWS_REGION=eu-central-1, or give the secret's full ARN (it names the region)."
)


def region_name(secret_id: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """AWS_REGION, else AWS_DEFAULT_REGION, else the region in a secret ARN; None leaves it to boto3."""
    environ = os.environ if env is None else env
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = environ.get(name, "").strip()
        if value:
            return value
    match = _ARN_REGION.match(secret_id or "")
    return match.group(1) if match else None


def client(service: str, *, secret_id: str | None = None) -> Any:
    """boto3.client(service) in the region above; a missing region is a ConfigError naming the fix."""
    import boto3
    from botocore.exceptions import NoRegionError

    try:
        return boto3.client(service, region_name=region_name(secret_id))  # type: ignore[call-overload]
    except NoRegionError:
        raise ConfigError([NO_REGION], heading="AWS cannot be used") from None
