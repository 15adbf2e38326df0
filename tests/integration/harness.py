"""The real handler against the simulators on loopback and moto (as a local server) for AWS.

The stack itself is tools/local_stack.py, shared with `make demo` and `make bench`; this adds what only
the tests need.
"""

from __future__ import annotations

import json

import boto3
from tools.local_stack import EMAIL, PASSWORD, START, LocalStack, moto_server

__all__ = ["EMAIL", "PASSWORD", "START", "Harness", "moto_server"]


class Harness(LocalStack):
    def secret_targets(self, targets: list[dict[str, object]]) -> None:
        """Switch the secret to its list form: one entry per followed patient."""
        sm = boto3.client("secretsmanager", endpoint_url=self.moto_endpoint)
        sm.put_secret_value(
            SecretId=self.secret_arn,
            SecretString=json.dumps({"LINK_UP_USERNAME": EMAIL, "LINK_UP_PASSWORD": PASSWORD, "TARGETS": targets}),
        )
        self.new_container()
