"""The real handler against the simulators on loopback and moto (as a local server) for AWS.

A Harness owns one virtual clock shared by the LibreLink Up simulator, the Nightscout stand-in and the
bridge; `run()` invokes functions/sync/app.handler exactly as the schedule would; `cold_run()` does the
same in a fresh Python process, whose only memory of earlier runs is what DynamoDB holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from tools.run_handler import LocalContext
from tools.simulators.clock import VirtualClock
from tools.simulators.librelinkup import LinkUpSimulator
from tools.simulators.nightscout import NightscoutStandIn

from tests.support.template import create_state_table

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "functions" / "sync"))

EMAIL = "fiona.follower@example.invalid"
PASSWORD = "correct horse battery staple"
START = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC).timestamp()


@dataclass
class AwsCalls:
    calls: list[str] = field(default_factory=list)

    def __call__(self, model: Any = None, **_: Any) -> None:
        self.calls.append(model.name if model is not None else "?")


class Harness:
    def __init__(self, moto_endpoint: str, *, start: float = START, region: str = "eu") -> None:
        self.clock = VirtualClock(start)
        self.llu = LinkUpSimulator(self.clock).start()
        self.ns = NightscoutStandIn(self.clock).start()
        self.moto_endpoint = moto_endpoint
        self.account = self.llu.add_account(EMAIL, PASSWORD, home_region=region)
        self.ns_token = self.ns.uploader_token()
        self.env: dict[str, str] = {}
        self.aws_calls = AwsCalls()
        self._deps: Any = None

    def stop(self) -> None:
        self.llu.stop()
        self.ns.stop()

    # --- AWS resources -----------------------------------------------------------------------

    def provision(self, *, region_setting: str = "EU", connection: str = "", ns_token: str | None = None,
                  ns_url: str | None = None, password: str = PASSWORD, **extra_env: str) -> None:
        ddb = boto3.client("dynamodb", endpoint_url=self.moto_endpoint)
        table = create_state_table(ddb, f"linkup-sync-state-{os.getpid()}-{id(self)}")
        sm = boto3.client("secretsmanager", endpoint_url=self.moto_endpoint)
        secret = sm.create_secret(Name=f"linkup-sync-{id(self)}")
        self.secret_arn = secret["ARN"]
        self.put_secret(ns_token=ns_token, ns_url=ns_url, password=password)
        self.env = {
            "LINK_UP_REGION": region_setting,
            "LINK_UP_CONNECTION": connection,
            "LINK_UP_VERSION": "4.16.0",
            "NIGHTSCOUT_API_V3": "false",
            "LINK_UP_API_URL": self.llu.url_template,
            "STATE_TABLE_NAME": table,
            "CREDENTIALS_SECRET_ID": self.secret_arn,
            "POWERTOOLS_SERVICE_NAME": "linkup-sync",
            "POWERTOOLS_METRICS_NAMESPACE": "LinkupSync",
            "AWS_ENDPOINT_URL": self.moto_endpoint,
            **extra_env,
        }
        self.deadline_s: float | None = None

    def put_secret(self, *, password: str = PASSWORD, ns_token: str | None = None, ns_url: str | None = None) -> None:
        sm = boto3.client("secretsmanager", endpoint_url=self.moto_endpoint)
        sm.put_secret_value(
            SecretId=self.secret_arn,
            SecretString=json.dumps({
                "LINK_UP_USERNAME": EMAIL,
                "LINK_UP_PASSWORD": password,
                "NIGHTSCOUT_URL": ns_url or self.ns.base_url,
                "NIGHTSCOUT_API_TOKEN": ns_token or self.ns_token,
            }),
        )

    def secret_targets(self, targets: list[dict[str, object]]) -> None:
        """Switch the secret to its list form: one entry per followed patient."""
        sm = boto3.client("secretsmanager", endpoint_url=self.moto_endpoint)
        sm.put_secret_value(
            SecretId=self.secret_arn,
            SecretString=json.dumps({"LINK_UP_USERNAME": EMAIL, "LINK_UP_PASSWORD": PASSWORD, "TARGETS": targets}),
        )
        self.new_container()

    # --- runs --------------------------------------------------------------------------------

    def event(self) -> dict[str, str]:
        now = datetime.fromtimestamp(self.clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"scheduled_time": now, "execution_id": f"exec-{int(self.clock())}",
                "schedule_arn": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/test", "attempt": "1"}

    def new_container(self) -> None:
        """Forget the warm dependencies, like a new Lambda container in the same process."""
        self._deps = None

    def run(self) -> dict[str, Any]:
        from aws_lambda_powertools.utilities import parameters

        import app
        from linkup_sync.runtime import Dependencies

        if self._deps is None:
            parameters.clear_caches()
            self._deps = Dependencies.from_env(self.env, clock=self.clock)
            if self.deadline_s is not None:
                self._deps.deadline_s = self.deadline_s
            self._deps.store.client.meta.events.register("before-call", self.aws_calls)
            self._deps.credentials.provider.client.meta.events.register("before-call", self.aws_calls)
        app.DEPENDENCIES = self._deps
        result: dict[str, Any] = app.handler(self.event(), LocalContext())
        return result

    def cold_run(self) -> dict[str, Any]:
        """One invocation in a brand-new Python process (a Lambda cold start)."""
        env = {**os.environ, **self.env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(ROOT)}
        event_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"event-{os.getpid()}-{id(self)}.json"
        event_file.write_text(json.dumps(self.event()))
        proc = subprocess.run(
            [sys.executable, "-m", "tools.run_handler", "--event", str(event_file), "--now", str(self.clock())],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )
        self.last_cold_output = proc.stdout + proc.stderr
        assert proc.returncode == 0, self.last_cold_output
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"result"')][-1]
        result: dict[str, Any] = json.loads(line)["result"]
        return result

    def stored_account(self) -> Any:
        from linkup_sync.state.dynamodb import DynamoDBStateStore
        from linkup_sync.state.model import account_key

        client = boto3.client("dynamodb", endpoint_url=self.moto_endpoint)
        return DynamoDBStateStore(self.env["STATE_TABLE_NAME"], client=client).load(account_key(EMAIL))

    def tick(self, seconds: float = 300) -> None:
        self.clock.advance(seconds)


@contextmanager
def moto_server() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per AWS call is noise here

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
