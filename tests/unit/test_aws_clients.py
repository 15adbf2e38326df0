"""Every boto3 client comes from linkup_sync.aws.client, with timeouts and retries that fit a run (issue 21).

botocore's defaults (60 s connect and read timeouts, up to 10 attempts for DynamoDB) let a slow AWS
service alone push a run past its Timeout. Here: one call takes at most AWS_CALL_WORST_S, and inside a
run no AWS call starts after the run's time for them, so the run ends before template.yaml's Timeout.
"""

from __future__ import annotations

import ast
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws
from tools.local_stack import HOSTED_TEMPLATE_PATH, create_state_table, read_template

from linkup_sync import aws
from linkup_sync.alerts import SnsAlerts
from linkup_sync.errors import StateUnavailable
from linkup_sync.model import Credentials, Target
from linkup_sync.runtime import RUN_AWS_UNTIL_S, RUN_DEADLINE_S, Dependencies, run_once
from linkup_sync.settings import Settings
from linkup_sync.state.dynamodb import DynamoDBStateStore
from linkup_sync.state.incidents import DynamoDBIncidentStore
from linkup_sync.state.model import account_key
from tests.support.moto_hosted import aws_env

ROOT = Path(__file__).resolve().parents[2]
# What the functions run (the command line's accounts commands use the same stores). The setup command
# (cli/linkup_sync_cli/setup_*.py) deploys from a person's shell with its own clients: not a run.
SHIPPED = [ROOT / "layers", ROOT / "functions"]


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    aws_env(monkeypatch)
    with mock_aws():
        yield create_state_table(aws.client("dynamodb"), "bounded-state")


def expect_bounded(client: object) -> None:
    config = client.meta.config  # type: ignore[attr-defined]
    assert config.connect_timeout == aws.AWS_CONNECT_TIMEOUT_S == 1.0
    assert config.read_timeout == aws.AWS_READ_TIMEOUT_S == 2.0
    assert config.retries == {"mode": "standard", "total_max_attempts": aws.AWS_MAX_ATTEMPTS}
    assert aws.AWS_MAX_ATTEMPTS == 2


def test_every_client_the_run_uses_is_bounded(table: str) -> None:
    store = DynamoDBStateStore(table)
    expect_bounded(store.client)
    expect_bounded(DynamoDBIncidentStore(table).client)  # without a store to share: its own, bounded
    expect_bounded(SnsAlerts("arn:aws:sns:us-east-1:123456789012:alerts").client)
    for service in ("kms", "secretsmanager", "sqs"):
        expect_bounded(aws.client(service))


def test_no_module_of_the_functions_builds_a_boto3_client_of_its_own() -> None:
    offenders = []
    for folder in SHIPPED:
        for path in folder.rglob("*.py"):
            if path.name == "aws.py" and path.parent.name == "linkup_sync":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in ("client", "resource", "Session")
                    and isinstance(node.value, ast.Name)
                    and node.value.id in ("boto3", "session")
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_a_run_ends_before_the_timeout_even_when_aws_is_slow() -> None:
    """The worst case: the run's last AWS call starts just before the run's time for them ends and takes
    every attempt's full timeouts and the back-off."""
    assert aws.AWS_CALL_WORST_S == 2 * (1.0 + 2.0) + 1.0
    sync_timeout = read_template()["Resources"]["SyncFunction"]["Properties"]["Timeout"]
    assert RUN_DEADLINE_S < RUN_AWS_UNTIL_S
    assert sync_timeout - 2 >= RUN_AWS_UNTIL_S + aws.AWS_CALL_WORST_S
    worker_timeout = read_template(HOSTED_TEMPLATE_PATH)["Resources"]["SyncWorkerFunction"]["Properties"]["Timeout"]
    assert worker_timeout - 2 >= RUN_AWS_UNTIL_S + aws.AWS_CALL_WORST_S


def test_no_aws_call_starts_after_the_runs_time(table: str) -> None:
    store = DynamoDBStateStore(table)
    sent: list[str] = []
    store.client.meta.events.register("before-send", lambda **kw: sent.append("sent"))
    key = account_key("someone@example.invalid")
    store.load(key)
    assert sent == ["sent"]
    with aws.calls_until(time.monotonic() - 1), pytest.raises(StateUnavailable, match="RunTimeUsedUp"):
        store.load(key)
    assert sent == ["sent"]  # refused before anything went out
    with aws.calls_until(time.monotonic() + 60):
        store.load(key)  # time left: the call goes out
    store.load(key)  # outside a run: no limit (the command line)
    assert sent == ["sent"] * 3


def test_the_limit_is_the_runs_own_not_another_threads(table: str) -> None:
    """The hosted worker runs ten accounts in threads on one client: one run's end is not another's."""
    store = DynamoDBStateStore(table)
    key = account_key("someone@example.invalid")
    outcome: list[str] = []

    def other_account() -> None:
        with aws.calls_until(time.monotonic() + 60):
            store.load(key)
            outcome.append("loaded")

    with aws.calls_until(time.monotonic() - 1):
        thread = threading.Thread(target=other_account)
        thread.start()
        thread.join(30)
        with pytest.raises(StateUnavailable):
            store.load(key)
    assert outcome == ["loaded"]


class FixedCredentials:
    def get(self) -> Credentials:
        target = Target(None, "https://anna.example.com", "bridge-0123456789abcdef")
        return Credentials(username="fiona@example.invalid", password="hunter2hunter2", targets=(target,))


def test_run_once_holds_its_aws_calls_to_the_runs_time(table: str) -> None:
    """A run whose time for AWS calls is up (here: from the start) fails with StateUnavailable at its first
    DynamoDB call instead of waiting on AWS; the next run starts again from what the table holds."""
    settings = Settings.from_env({"STATE_TABLE_NAME": table, "CREDENTIALS_SECRET_ID": "arn:secret"})
    deps = Dependencies(settings=settings, store=DynamoDBStateStore(table), credentials=FixedCredentials())
    deps.aws_until_s = 0.0
    with pytest.raises(StateUnavailable, match="RunTimeUsedUp"):
        run_once(deps)
    assert Dependencies(settings=settings, store=deps.store, credentials=deps.credentials).aws_until_s == 21.0
